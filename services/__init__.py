"""The services: order, inventory, billing, notification. Each imports `bus` and `contracts`,
never another service. Beside them: the chassis they run on (`runtime`) and the operator
console (`console`: the dashboard and its controls), which the notification process serves."""

from importlib.metadata import version

__version__ = version("orderbus")
"""The one version number: pyproject.toml's, as installed."""
