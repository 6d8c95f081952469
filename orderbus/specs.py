"""Which modules build which service: the one table the CLI and the tests look services up in.
Service `<name>` is put together by `services.<name>.bootstrap.spec(own)`, `own` being its own
settings, the model `<Name>Settings` of `services.<name>.settings`."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable

from fastapi import FastAPI

from bus import Bus, BusSettings, create_bus
from services.runtime.app import build_app
from services.runtime.service import ServiceSpec
from services.runtime.settings import SERVICES, OwnSettings, ServiceName, ServiceSettings

_SPECS: dict[ServiceName, str] = {name: f"services.{name}.bootstrap" for name in SERVICES}
_OWN_SETTINGS: dict[ServiceName, tuple[str, str]] = {
    name: (f"services.{name}.settings", f"{name.capitalize()}Settings") for name in SERVICES
}


def check_service(name: str) -> ServiceName:
    if name in _SPECS:
        return name
    close = difflib.get_close_matches(name, SERVICES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown service {name!r}{hint} (choose from {', '.join(SERVICES)})")


def own_settings_model(name: ServiceName) -> type[OwnSettings]:
    """The model of a service's own settings (`OrderSettings` for `order`)."""
    module, model = _OWN_SETTINGS[name]
    found: type[OwnSettings] = getattr(importlib.import_module(module), model)
    return found


def own_settings(name: ServiceName) -> OwnSettings:
    """A service's own settings (its port, database URL, ...), read from the environment."""
    return own_settings_model(name)()


def service_spec(name: ServiceName, own: OwnSettings | None = None) -> ServiceSpec:
    """The service put together; with its own settings read from the environment when `own`
    is None."""
    if own is not None and not isinstance(own, model := own_settings_model(name)):
        raise TypeError(f"{name} takes {model.__name__}, not {type(own).__name__}")
    spec: ServiceSpec = importlib.import_module(_SPECS[name]).spec(own)
    return spec


def create_app(
    name: ServiceName,
    settings: ServiceSettings,
    make_bus: Callable[[BusSettings], Bus] = create_bus,
    *,
    own: OwnSettings | None = None,
) -> FastAPI:
    return build_app(service_spec(name, own), settings, make_bus)
