"""Billing service: issues one invoice per order."""
