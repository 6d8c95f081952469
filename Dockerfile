# One image for every orderbus service: `docker run IMAGE run billing` (see docker-compose.yml).
# Pinned base by tag; only the runtime dependencies of pyproject.toml, no dev extras.
FROM python:3.11.11-slim-bookworm AS build

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

FROM python:3.11.11-slim-bookworm

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
