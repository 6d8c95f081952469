# A stand-in for python:3.11-slim-bookworm, from Debian's own Python (3.11 on bookworm): where
# no registry answers, the project's Dockerfile builds FROM this (PYTHON_IMAGE). It trusts
# what the building machine trusts (certs/: its local CAs, a TLS-inspecting proxy's among
# them), so pip inside the build reaches the package index as the machine does.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY certs/ /usr/local/share/ca-certificates/
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv python-is-python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && update-ca-certificates
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
