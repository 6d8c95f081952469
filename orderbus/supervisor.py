"""`orderbus up`: every service instance, started, checked ready, listed, and stopped cleanly.

On `memory` every instance runs in this process (the in-memory bus cannot cross processes);
on a real broker each instance is its own `orderbus run` process, as containers would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import uvicorn
from pydantic import SecretStr

from orderbus.specs import check_service, create_app, own_settings
from services.runtime import heap
from services.runtime.admin import ADMIN_TOKEN_ENV
from services.runtime.http import server_config
from services.runtime.logs import instance_context
from services.runtime.orphan import SUPERVISOR_ENV
from services.runtime.settings import SERVICES, OwnSettings, ServiceName, ServiceSettings
from services.runtime.shutdown import Deadline, exit_now


@dataclass(frozen=True)
class Instance:
    service: ServiceName
    instance_id: str
    port: int


def parse_replicas(text: str | None) -> dict[ServiceName, int]:
    """`billing=2,inventory=3` -> counts per service (1 for the rest)."""
    counts: dict[ServiceName, int] = dict.fromkeys(SERVICES, 1)
    for part in filter(None, (text or "").split(",")):
        name, sep, count = part.partition("=")
        if not sep or not count.strip().isdigit() or not 1 <= int(count) <= 16:
            raise ValueError(f"--replicas: {part!r} is not SERVICE=N with N from 1 to 16")
        counts[check_service(name.strip())] = int(count)
    return counts


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on `port`: with SO_REUSEADDR, as uvicorn binds, so the
    TIME_WAIT connections a busy run leaves behind do not count as "in use"."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def plan(
    settings: ServiceSettings, ports: dict[ServiceName, int], replicas: dict[ServiceName, int]
) -> list[Instance]:
    """First instance of a service on its port (`ports`, from each one's own settings); each
    further replica on the next free one."""
    taken = set(ports.values())
    spare = iter(
        p for p in range(max(taken) + 1, 65536) if p not in taken and port_free(settings.host, p)
    )
    return [
        Instance(service, f"{service}-{n}", ports[service] if n == 1 else next(spare))
        for service in SERVICES
        for n in range(1, replicas[service] + 1)
    ]


def url(settings: ServiceSettings, instance: Instance) -> str:
    return f"http://{settings.host}:{instance.port}"


Output = Literal["table", "json"]


def print_table(
    settings: ServiceSettings, instances: list[Instance], output: Output = "table"
) -> None:
    """What `up` prints once every instance is ready: a table for people, or one JSON line
    for programs (`--json`: the tests, `orderbus soak`)."""
    if output == "json":
        print(json.dumps(listing(settings, instances)), flush=True)
        return
    rows = [("service", "instance", "url")] + [
        (i.service, i.instance_id, url(settings, i)) for i in instances
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(dashboard_line(settings, instances))
    print(f"backend: {settings.bus.backend}; Ctrl-C stops everything", flush=True)


def listing(settings: ServiceSettings, instances: list[Instance]) -> dict[str, Any]:
    """`{"backend", "instances": [{"service", "instance", "url"}], "dashboard"}`; the dashboard's
    URL carries the token only where `up` made it, as the table's line does."""
    notification = next(i for i in instances if i.service == "notification")
    dashboard = f"{url(settings, notification)}/dashboard"
    if settings.admin_token is not None and not os.environ.get(ADMIN_TOKEN_ENV):
        dashboard += f"#token={settings.admin_token.get_secret_value()}"
    return {
        "backend": settings.bus.backend,
        "instances": [
            {"service": i.service, "instance": i.instance_id, "url": url(settings, i)}
            for i in instances
        ],
        "dashboard": dashboard,
    }


def dashboard_line(settings: ServiceSettings, instances: list[Instance]) -> str:
    """Where to watch: the first notification instance's dashboard. A token `up` generated is
    shown in the URL's fragment (browsers never send it to a server); one the user set is not
    echoed."""
    notification = next(i for i in instances if i.service == "notification")
    page = f"{url(settings, notification)}/dashboard"
    token = settings.admin_token
    if token is None:
        return f"dashboard: {page} (controls off: {ADMIN_TOKEN_ENV} is empty)"
    if os.environ.get(ADMIN_TOKEN_ENV):
        return f"dashboard: {page} (controls: your {ADMIN_TOKEN_ENV})"
    return f"dashboard: {page}#token={token.get_secret_value()}"


def with_admin_token(settings: ServiceSettings) -> ServiceSettings:
    """The settings with an admin token: the user's, or one made for this session only, so
    the dashboard's controls work out of the box and nobody else can use them."""
    if settings.admin_token is not None:
        return settings
    return settings.model_copy(update={"admin_token": SecretStr(secrets.token_urlsafe(24))})


async def wait_ready(settings: ServiceSettings, instances: list[Instance], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        for instance in instances:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(f"{url(settings, instance)}/ready")
                    if response.status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{instance.instance_id} not ready within {within_s}s")
                await asyncio.sleep(0.1)  # polling an HTTP endpoint: there is no event to await


TERMINATE_MARGIN_S = 5.0
"""How much longer than a child's own shutdown deadline `up` waits before killing it."""


def _on_stop_signals(stop: asyncio.Event, deadline: Deadline | None = None) -> None:
    """The first SIGINT or SIGTERM sets `stop` (and arms `deadline`); a second one exits."""
    loop = asyncio.get_running_loop()

    def first_or_second(signum: int) -> None:
        if stop.is_set():
            exit_now(signum, "orderbus up")
        stop.set()
        if deadline is not None:
            deadline.arm(loop)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, first_or_second, sig)


class _QuietServer(uvicorn.Server):
    """Signals are handled once for all servers of the process, not by each."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_in_process(
    settings: ServiceSettings,
    own: dict[ServiceName, OwnSettings],
    instances: list[Instance],
    output: Output = "table",
) -> None:
    servers = [
        _QuietServer(
            server_config(
                create_app(
                    i.service,
                    settings.model_copy(update={"instance_id": i.instance_id}),
                    own=own[i.service].model_copy(update={"port": i.port}),
                ),
                settings,
                i.port,
            )
        )
        for i in instances
    ]
    stop = asyncio.Event()
    _on_stop_signals(stop, Deadline(settings.shutdown_timeout_s, "orderbus up"))
    serving = [
        asyncio.create_task(s.serve(), context=instance_context(i.service, i.instance_id))
        for s, i in zip(servers, instances, strict=True)
    ]
    try:
        await _first_of(
            wait_ready(settings, instances, within_s=60),
            asyncio.wait(serving, return_when=asyncio.FIRST_COMPLETED),
        )
        if any(task.done() for task in serving):
            raise RuntimeError("a service stopped during start-up; its error is logged above")
        heap.freeze_started()
        print_table(settings, instances, output)
        # A server that stops on its own (its port taken, say) stops the rest too.
        await _first_of(stop.wait(), asyncio.wait(serving, return_when=asyncio.FIRST_COMPLETED))
    finally:
        # Ask, don't cancel: each server drains its requests and runs its lifespan shutdown.
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*serving, return_exceptions=True)


Children = list[tuple[Instance, asyncio.subprocess.Process]]
RESTARTS_PER_MINUTE = 5


async def _spawn(settings: ServiceSettings, instance: Instance) -> asyncio.subprocess.Process:
    env = os.environ | {
        "BUS_BACKEND": settings.bus.backend,
        "INSTANCE_ID": instance.instance_id,
        SUPERVISOR_ENV: str(os.getpid()),  # the child ends with us (services.runtime.orphan)
    }
    if settings.admin_token is not None:
        env[ADMIN_TOKEN_ENV] = settings.admin_token.get_secret_value()
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orderbus.cli",
        "run",
        instance.service,
        "--port",
        str(instance.port),
        env=env,
        # Its own session: Ctrl-C reaches us only, and we stop the children in order.
        start_new_session=True,
    )


async def run_processes(
    settings: ServiceSettings, instances: list[Instance], output: Output = "table"
) -> None:
    children: Children = []
    stop = asyncio.Event()
    # A second signal exits at once; the children, losing their parent, stop by themselves.
    _on_stop_signals(stop)
    try:
        for instance in instances:
            children.append((instance, await _spawn(settings, instance)))
        await _first_of(wait_ready(settings, instances, within_s=90), _any_exit(children))
        if (dead := _dead(children)) is not None:
            raise RuntimeError(f"{dead} exited during start-up")
        print_table(settings, instances, output)
        await _restart_until_stopped(settings, children, stop)
    finally:
        await _terminate(children, settings.shutdown_timeout_s + TERMINATE_MARGIN_S)


async def _restart_until_stopped(
    settings: ServiceSettings, children: Children, stop: asyncio.Event
) -> None:
    """Like a container restart policy: an instance that dies is started again (its events in
    flight are redelivered by the broker), unless it keeps dying."""
    restarts: dict[str, list[float]] = {}
    while True:
        await _first_of(stop.wait(), _any_exit(children))
        if stop.is_set():
            return
        for n, (instance, process) in enumerate(children):
            if process.returncode is None:
                continue
            recent = [
                t for t in restarts.get(instance.instance_id, []) if time.monotonic() - t < 60
            ]
            if len(recent) >= RESTARTS_PER_MINUTE:
                raise RuntimeError(f"{instance.instance_id} keeps exiting; stopping everything")
            restarts[instance.instance_id] = [*recent, time.monotonic()]
            print(
                f"{instance.instance_id} exited ({process.returncode}); restarting it",
                file=sys.stderr,
                flush=True,
            )
            children[n] = (instance, await _spawn(settings, instance))


def _dead(children: Children) -> str | None:
    for instance, process in children:
        if process.returncode is not None:
            return f"{instance.instance_id} (exit {process.returncode})"
    return None


async def _any_exit(children: Children) -> None:
    await asyncio.wait(
        [asyncio.ensure_future(p.wait()) for _, p in children],
        return_when=asyncio.FIRST_COMPLETED,
    )


async def _terminate(children: Children, within_s: float) -> None:
    """SIGTERM (each finishes its events in hand and acknowledges them), then wait up to
    `within_s`, then kill what is left."""
    running = [(i, p) for i, p in children if p.returncode is None]
    for _, process in running:
        process.terminate()
    waits = [asyncio.ensure_future(p.wait()) for _, p in running]
    if waits:
        await asyncio.wait(waits, timeout=within_s)
    for instance, process in running:
        if process.returncode is None:
            print(
                f"{instance.instance_id} did not stop within {within_s:.0f}s; killing it",
                file=sys.stderr,
                flush=True,
            )
            process.kill()
            await process.wait()


async def _first_of(*awaitables: Awaitable[Any]) -> None:
    """Wait for whichever finishes first (raising its error), then cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def up(
    settings: ServiceSettings, replicas: dict[ServiceName, int], output: Output = "table"
) -> None:
    own = {service: own_settings(service) for service in SERVICES}
    for service, its in own.items():
        if not port_free(settings.host, its.port):
            raise ValueError(
                f"port {its.port} for {service} is in use: stop what holds it or "
                f"set {service.upper()}_PORT"
            )
    instances = plan(settings, {service: its.port for service, its in own.items()}, replicas)
    settings = with_admin_token(settings)
    if settings.bus.backend == "memory":
        asyncio.run(run_in_process(settings, own, instances, output))
    else:
        asyncio.run(run_processes(settings, instances, output))
