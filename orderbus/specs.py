"""Which module builds which service: the one table the CLI and the tests look services up in."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable

from fastapi import FastAPI

from bus import Bus, BusSettings, create_bus
from services.runtime.app import build_app
from services.runtime.service import ServiceSpec
from services.runtime.settings import SERVICES, ServiceName, ServiceSettings

_SPECS: dict[ServiceName, str] = {name: f"services.{name}.bootstrap" for name in SERVICES}


def check_service(name: str) -> ServiceName:
    if name in _SPECS:
        return name
    close = difflib.get_close_matches(name, SERVICES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown service {name!r}{hint} (choose from {', '.join(SERVICES)})")


def service_spec(name: ServiceName) -> ServiceSpec:
    spec: ServiceSpec = importlib.import_module(_SPECS[name]).spec()
    return spec


def create_app(
    name: ServiceName,
    settings: ServiceSettings,
    make_bus: Callable[[BusSettings], Bus] = create_bus,
) -> FastAPI:
    return build_app(service_spec(name), settings, make_bus)
