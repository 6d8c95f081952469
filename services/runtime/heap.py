"""Keep the garbage collector off what a service built to start.

A started service holds objects it keeps for its whole life: modules, SQLAlchemy's tables and
compiled statements, pydantic's validators, FastAPI's routes, the broker client. CPython
scans every tracked object on each full collection, with the event loop held, and under load
full collections come every few seconds: scanning all of that each time, to free nothing of
it, is the tail of `POST /orders` (docs/performance.md, "The collector kept off start-up
objects").

`gc.freeze()` moves what is alive at that moment into a generation the collector never
scans; everything allocated afterwards is collected as before, with CPython's thresholds.
"""

from __future__ import annotations

import gc


def freeze_started() -> None:
    """Call once the process has started its services: collect what start-up left behind,
    then keep the collector off what is still alive."""
    gc.collect()
    gc.freeze()
