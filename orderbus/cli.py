"""The `orderbus` command line: run the services, list the backends."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from bus import BusSettings
from bus.registry import BACKENDS, backend_info
from services import __version__
from services.runtime.http import server_config
from services.runtime.logs import bind_instance, configure_logging
from services.runtime.settings import SERVICES, ServiceSettings
from services.runtime.tracing import configure_tracing


def _settings(backend: str | None) -> ServiceSettings:
    if backend is None:
        return ServiceSettings()
    return ServiceSettings(bus=BusSettings(backend=backend))


def _run(args: argparse.Namespace) -> int:

    from orderbus.specs import check_service, create_app, own_settings
    from services.runtime.orphan import die_with_parent
    from services.runtime.shutdown import Deadline, GracefulServer

    service = check_service(args.service)
    settings = ServiceSettings()
    own = own_settings(service)
    if args.port:  # the port it really listens on, which the instance advertises
        own = own.model_copy(update={"port": args.port})
    configure_logging(settings.log_format, settings.log_level)
    bind_instance(service, settings.instance(service))
    die_with_parent()
    configure_tracing(service, settings.instance(service))
    config = server_config(create_app(service, settings, own=own), settings, own.port)
    deadline = Deadline(settings.shutdown_timeout_s, settings.instance(service))
    GracefulServer(config, deadline).run()
    return 0


def _up(args: argparse.Namespace) -> int:
    from orderbus.supervisor import parse_replicas, up

    settings = _settings(args.backend)
    configure_logging(settings.log_format, settings.log_level)
    configure_tracing("orderbus", "up")  # spans of the services `up` runs in this process
    up(settings, parse_replicas(args.replicas), "json" if args.json else "table")
    return 0


def _dlq(args: argparse.Namespace) -> int:
    import asyncio

    from orderbus import dlq

    settings = BusSettings() if args.backend is None else BusSettings(backend=args.backend)
    code, output = asyncio.run(
        dlq.run(args.action, args.service, args.refs, args.all, args.json, settings)
    )
    print(output, file=sys.stdout if code == 0 else sys.stderr)
    return code


def _migrate(args: argparse.Namespace) -> int:
    import asyncio

    from orderbus.specs import check_service, service_spec
    from services.runtime import schema
    from services.runtime.database import create_engine
    from services.runtime.settings import database_url

    names = [check_service(name) for name in args.service] or list(SERVICES)
    if args.new is not None:
        if len(names) != 1:
            raise ValueError("--new writes one service's revision: name the service")
        spec = service_spec(names[0])
        metadata = schema.service_metadata(spec.metadata, inbox=bool(spec.subscriptions))
        print(schema.new_revision(names[0], metadata, args.new))
        return 0
    settings = ServiceSettings()
    configure_logging(settings.log_format, settings.log_level)

    async def migrate_all() -> None:
        for name in names:
            spec = service_spec(name)
            metadata = schema.service_metadata(spec.metadata, inbox=bool(spec.subscriptions))
            engine = create_engine(database_url(settings, spec.own, name))
            try:
                revision = await schema.migrate(engine, name, metadata)
            finally:
                await engine.dispose()
            print(f"{name}: at revision {revision}")

    asyncio.run(migrate_all())
    return 0


def _demo(args: argparse.Namespace) -> int:
    import asyncio

    from orderbus.demo.run import SCENARIOS, run

    numbers = args.scenario or list(SCENARIOS)
    unknown = sorted(set(numbers) - set(SCENARIOS))
    if unknown:
        raise ValueError(f"--scenario: no scenario {unknown[0]} (choose 1 to {len(SCENARIOS)})")
    settings = BusSettings() if args.backend is None else BusSettings(backend=args.backend)
    logging.basicConfig(level=logging.CRITICAL)  # the tables tell the story; logs would not
    asyncio.run(run(settings, numbers))
    return 0


def _soak(args: argparse.Namespace) -> int:
    import asyncio
    import tempfile
    from pathlib import Path

    from orderbus.soak import soak

    with tempfile.TemporaryDirectory(prefix="orderbus-soak-") as data_dir:
        table = asyncio.run(
            soak(args.backend, args.orders, args.kills, args.concurrency, Path(data_dir))
        )
    print(table)
    return 0


def _bench(args: argparse.Namespace) -> int:
    import asyncio

    from orderbus.bench.figures import render, write_json
    from orderbus.bench.runner import SECTIONS, Plan, machine, resolve_urls, run

    backends = args.backend or ["redis-streams", "redis-pubsub", "rabbitmq", "kafka", "nats"]
    sections = set(args.sections.split(",")) if args.sections else set(SECTIONS)
    if unknown := sections - set(SECTIONS):
        raise ValueError(f"--sections: unknown {', '.join(sorted(unknown))}")
    system_backend = args.system_backend or (
        "redis-streams" if "redis-streams" in backends else backends[0]
    )
    urls = resolve_urls(sorted({*backends, system_backend}), args.url or [])
    plan = Plan.quick() if args.quick else Plan.full()
    logging.basicConfig(level=logging.ERROR)
    # FastStream logs a traceback when a blocked read is cut short by close(): noise here.
    logging.getLogger("bus.faststream").setLevel(logging.CRITICAL)
    before = machine()
    if sections & {"http", "system"} and before["load_generator"] != "wrk":
        # The figures would measure the client as much as the services (docs/performance.md,
        # "Method").
        print(
            "orderbus bench: wrk is not installed: the HTTP load comes from an httpx client in "
            "this process, which competes with the services for the cores; the http and "
            "system figures are then far lower than with wrk (apt install wrk)",
            file=sys.stderr,
        )
    figures = asyncio.run(run(backends, urls, plan, sections, system_backend))
    after = machine()
    header = (
        f"orderbus bench{' --quick' if args.quick else ''}: {before['cpu']}, {before['cores']} "
        f"cores, {before['memory_gib']} GiB; HTTP load by {before['load_generator']}; load "
        f"average {before['load_average'][0]:.2f} at start, {after['load_average'][0]:.2f} at "
        f"end; each figure the median of {plan.runs} "
        "runs; cost = bus / baseline in time per message (1.00x: no overhead), the median of "
        "the costs of each interleaved pair of runs, spread their lowest and highest"
    )
    print(render(figures, header))
    if args.json:
        write_json(args.json, figures, before | {"load_average_end": after["load_average"]})
    return 0


def _backends(_: argparse.Namespace) -> int:
    rows = [("backend", "fan-out", "competing", "catch-up", "redelivery", "ordering")]
    yes = {True: "yes", False: "no"}
    for name in BACKENDS:
        caps = backend_info(name).capabilities
        rows.append(
            (
                name,
                yes[caps.fan_out],
                yes[caps.competing_consumers],
                yes[caps.offline_catch_up],
                yes[caps.redelivery],
                caps.ordering,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orderbus", description=__doc__)
    parser.add_argument("--version", action="version", version=f"orderbus {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start every service; Ctrl-C stops them gracefully")
    up.add_argument("--backend", choices=list(BACKENDS), help="overrides BUS_BACKEND")
    up.add_argument("--replicas", metavar="SERVICE=N,...", help="e.g. billing=2")
    up.add_argument(
        "--json", action="store_true", help="once ready, print one JSON line instead of the table"
    )
    up.set_defaults(func=_up)

    run = commands.add_parser("run", help="run one service instance (what a container runs)")
    run.add_argument("service", help="order, inventory, billing or notification")
    run.add_argument("--port", type=int, help="default: the service's *_PORT")
    run.set_defaults(func=_run)

    dead = commands.add_parser("dlq", help="list, show, replay or purge a service's dead letters")
    dead.add_argument("action", choices=["list", "show", "replay", "purge"])
    dead.add_argument("refs", nargs="*", metavar="REF", help="entries, as `list` names them")
    dead.add_argument("--service", required=True, help="the consuming service (its group)")
    dead.add_argument("--all", action="store_true", help="every dead letter of the service")
    dead.add_argument("--json", action="store_true", help="machine-readable output")
    dead.add_argument("--backend", choices=list(BACKENDS), help="overrides BUS_BACKEND")
    dead.set_defaults(func=_dlq)

    migrate = commands.add_parser(
        "migrate", help="upgrade the services' databases to the latest schema revision"
    )
    migrate.add_argument("service", nargs="*", help="default: every service")
    migrate.add_argument(
        "--new",
        metavar="MESSAGE",
        help="write the service's next revision from its changed table models instead",
    )
    migrate.set_defaults(func=_migrate)

    demo = commands.add_parser("demo", help="scripted scenarios: fan-out, competing consumers, ...")
    demo.add_argument("--backend", choices=list(BACKENDS), help="overrides BUS_BACKEND")
    demo.add_argument(
        "--scenario", type=int, action="append", metavar="N", help="run only these (1-7)"
    )
    demo.set_defaults(func=_demo)

    soak = commands.add_parser("soak", help="many orders while replicas are killed at random")
    soak.add_argument("--backend", choices=list(BACKENDS), default="redis-streams")
    soak.add_argument("--orders", type=int, default=2_000)
    soak.add_argument("--kills", type=int, default=3, help="replicas to SIGKILL along the way")
    soak.add_argument("--concurrency", type=int, default=16)
    soak.set_defaults(func=_soak)

    bench = commands.add_parser(
        "bench", help="measure the bus and the services next to the raw clients (a benchmark)"
    )
    bench.add_argument(
        "--backend",
        action="append",
        choices=[b for b in BACKENDS if b != "memory"],
        help="repeat for several (default: every broker backend)",
    )
    bench.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    bench.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    bench.add_argument(
        "--url",
        action="append",
        metavar="BACKEND=URL",
        help="broker of a backend (default: BUS_URL for BUS_BACKEND, else the loopback default)",
    )
    bench.add_argument(
        "--sections",
        help="comma-separated subset of "
        + ",".join(("publish", "consume", "latency", "http", "system")),
    )
    bench.add_argument(
        "--system-backend",
        choices=list(BACKENDS),
        help="backend of the POST /orders and whole-system runs (default: redis-streams)",
    )
    bench.set_defaults(func=_bench)

    backends = commands.add_parser("backends", help="list the backends and what each guarantees")
    backends.set_defaults(func=_backends)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ValidationError as exc:  # bad settings: one clear line per problem, no traceback
        for error in exc.errors():
            where = ".".join(map(str, error["loc"])) or "settings"
            print(
                f"orderbus: {where}: {error['msg'].removeprefix('Value error, ')}", file=sys.stderr
            )
        return 2
    except ValueError as exc:  # bad arguments
        print(f"orderbus: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # the system could not start or keep running
        print(f"orderbus: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
