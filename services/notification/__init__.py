"""Notification service: records one notification per order, "emails" it, pushes it live."""
