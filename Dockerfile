# One image for every orderbus service: `docker run IMAGE run billing` (see docker-compose.yml).
# Pinned base by tag; only the runtime dependencies of pyproject.toml, no dev extras.
# PYTHON_IMAGE: another base with Python 3.11 and `python -m venv` (deploy/images/build.sh
# makes one from Debian's packages where no registry answers).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bus ./bus
COPY contracts ./contracts
COPY services ./services
# A virtualenv holding the project, its pinned runtime dependencies and the OTLP span
# exporter (tracing stays off until OTEL_* variables ask for it).
RUN python -m venv /opt/orderbus \
 && /opt/orderbus/bin/pip install --no-compile ".[otlp]" \
 && /opt/orderbus/bin/python -m compileall -q /opt/orderbus/lib

FROM ${PYTHON_IMAGE}

# Non-root: the services need no privilege, and a port above 1024.
RUN useradd --system --uid 10001 --home-dir /home/orderbus --create-home orderbus
COPY --from=build /opt/orderbus /opt/orderbus
ENV PATH=/opt/orderbus/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ORDERBUS_HOST=0.0.0.0 \
    ORDERBUS_DATA_DIR=/home/orderbus/data
USER orderbus
WORKDIR /home/orderbus
ENTRYPOINT ["orderbus"]
CMD ["run", "order"]
