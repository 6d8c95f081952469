# A stand-in for rabbitmq:3 from Debian's package (RabbitMQ 3.10 on bookworm). The default
# user may connect from outside the container, as with the official image.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rabbitmq-server \
 && rm -rf /var/lib/apt/lists/* \
 && echo "loopback_users = none" > /etc/rabbitmq/rabbitmq.conf
EXPOSE 5672
CMD ["rabbitmq-server"]
