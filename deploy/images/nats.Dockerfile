# A stand-in for nats:2 from Debian's package (nats-server 2.9 on bookworm). Arguments go to
# the server, as with the official image (testcontainers passes `-js`); wget for health checks.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nats-server wget \
 && rm -rf /var/lib/apt/lists/*
EXPOSE 4222 8222
ENTRYPOINT ["nats-server", "--http_port", "8222"]
CMD ["-js"]
