# One image for every orderbus service: `docker run IMAGE run billing` (see docker-compose.yml).
# Pinned base by tag; only the runtime dependencies locked in uv.lock, no dev extras.
# PYTHON_IMAGE: another base with Python 3.11 and `python -m venv` (deploy/images/build.sh
# makes one from Debian's packages where no registry answers).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
FROM ${PYTHON_IMAGE} AS build
# The uv that pyproject.toml's [tool.uv] requires (the Makefile's UV_VERSION).
ARG UV_VERSION=0.13.9

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_SYSTEM_CERTS=1 UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy \
    UV_NO_CACHE=1 UV_PROJECT_ENVIRONMENT=/opt/orderbus
RUN python -m venv /opt/uv && /opt/uv/bin/pip install --quiet "uv==${UV_VERSION}"
WORKDIR /src
# A virtualenv holding exactly uv.lock's runtime dependencies and the OTLP span exporter
# (tracing stays off until OTEL_* variables ask for it); dependencies first, so a change of
# code alone rebuilds only the last layer.
COPY pyproject.toml uv.lock README.md LICENSE ./
RUN /opt/uv/bin/uv sync --frozen --no-install-project --extra otlp --python python
COPY bus ./bus
COPY contracts ./contracts
COPY services ./services
COPY orderbus ./orderbus
RUN /opt/uv/bin/uv sync --frozen --no-editable --extra otlp --python python

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
