"""Per-service broker users for docker-compose: who may publish and consume what.

`rules` derives each service's rights from the tables (`contracts.events.EVENTS`, the live
topics of `contracts.live`, `bus.names`, the service specs); one module per broker renders
them in that broker's own format; `python -m orderbus.broker_access` writes the files under
`deploy/` (`--check`: fail if the committed ones differ). Kafka has none: the bus speaks to it
without SASL, so there is no user to give rights to.
"""
