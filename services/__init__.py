"""The services: order, inventory, billing, notification. Each imports `bus` and `contracts`,
never another service."""
