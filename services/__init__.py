"""The services: order, inventory, billing, notification. Each imports `bus` and `contracts`,
never another service."""

from importlib.metadata import version

__version__ = version("orderbus")
"""The one version number: pyproject.toml's, as installed."""
