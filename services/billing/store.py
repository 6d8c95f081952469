"""The billing database: one invoice per order (the primary key says "one"), and its voiding."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, String, Table

from services.runtime.database import UtcDateTime
from services.runtime.outbox import outbox_table

metadata = MetaData()

invoices = Table(
    "invoices",
    metadata,
    Column("order_id", String(36), primary_key=True),
    Column("invoice_id", String(36), nullable=False, unique=True),
    Column("customer_id", String(64), nullable=False),
    Column("total", String(20), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("instance_id", String(64), nullable=False),
    Column("issued_at", UtcDateTime, nullable=False),
)

voids = Table(
    "invoice_voids",
    metadata,
    Column("order_id", String(36), primary_key=True),
    Column("invoice_id", String(36), nullable=False, unique=True),
    Column("reason", String(200), nullable=False),
    Column("instance_id", String(64), nullable=False),
    Column("voided_at", UtcDateTime, nullable=False),
)
"""A fact of its own rather than a status column: an invoice is issued once and voided at most
once, and neither row is ever updated."""

outbox = outbox_table(metadata)
