"""The broker users of docker-compose: generated from the tables, and as narrow as meant."""

from __future__ import annotations

import re

from orderbus.broker_access.__main__ import ROOT, generated_files, main
from orderbus.broker_access.nats_conf import publish_allowed
from orderbus.broker_access.rabbitmq_definitions import permissions
from orderbus.broker_access.redis_acl import user_line
from orderbus.broker_access.rules import service_rights


def test_the_committed_broker_files_are_what_the_tables_generate() -> None:
    stale = [
        str(path)
        for path, text in generated_files().items()
        if not (ROOT / path).exists() or (ROOT / path).read_text() != text
    ]
    assert not stale, f"run `python -m orderbus.broker_access`: {stale}"
    assert main(["--check"]) == 0


def test_billing_publishes_its_own_topics_and_consumes_the_orders() -> None:
    billing = service_rights("billing")
    assert set(billing.publishes) == {"invoice_issued", "invoice_voided", "instance_activity"}
    assert set(billing.consumes) == {"order_created", "order_rejected"}
    assert billing.dead_letters == "dlq.billing"


def test_redis_billing_may_xadd_only_to_its_own_keys() -> None:
    line = user_line(service_rights("billing"))
    [publishing] = [s for s in re.findall(r"\(([^)]*)\)", line) if "+xadd" in s]
    assert "~order_created" not in publishing
    assert "&order_created" not in publishing
    assert "~invoice_issued" in publishing
    assert "~dlq.billing" in publishing


def test_nats_billing_may_not_publish_an_order_topic() -> None:
    allowed = publish_allowed(service_rights("billing"))
    assert "invoice_issued" in allowed
    assert "dlq.billing" in allowed
    assert not {"order_created", "order_confirmed", "order_rejected", ">"} & set(allowed)
    assert "$JS.API.CONSUMER.MSG.NEXT.order_created.billing" in allowed
    assert "$JS.API.CONSUMER.MSG.NEXT.order_created.inventory" not in allowed


def test_rabbitmq_billing_may_write_neither_order_exchanges_nor_the_default_one() -> None:
    write = re.compile(permissions(service_rights("billing"))["write"])
    assert write.fullmatch("invoice_issued")
    assert write.fullmatch("dlq.billing")
    for refused in ("order_confirmed", "order_created", "amq.default", "", "dlq.order"):
        assert not write.fullmatch(refused), refused
