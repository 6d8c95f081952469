"""Inventory service: reserves stock for each order, all lines or none."""
