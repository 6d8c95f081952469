"""The notification database: one notification per order and kind (received, then its outcome)."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, String, Table

from services.runtime.database import UtcDateTime

metadata = MetaData()

notifications = Table(
    "notifications",
    metadata,
    Column("order_id", String(36), primary_key=True),
    Column("kind", String(16), primary_key=True),  # received | confirmed | rejected
    Column("customer_id", String(64), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("message", String(500), nullable=False),
    Column("instance_id", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

mail_queue = Table(
    "mail_queue",
    metadata,
    Column("order_id", String(36), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("customer_id", String(64), nullable=False),
    Column("message", String(500), nullable=False),
    Column("claimed_by", String(64), nullable=False),
    Column("claimed_until", UtcDateTime, nullable=False, index=True),
)
"""Emails recorded, not yet sent: written in the handler's transaction beside the notification
and deleted once sent (`services.notification.mail`)."""
