"""The billing database: one invoice per order (the primary key says "one")."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, String, Table

from services.runtime.database import UtcDateTime

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
