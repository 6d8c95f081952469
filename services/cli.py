"""The `orderbus` command line."""

from __future__ import annotations

import argparse
import sys

from bus.registry import BACKENDS, backend_class


def _backends(_: argparse.Namespace) -> int:
    rows = [("backend", "fan-out", "competing", "catch-up", "redelivery", "ordering")]
    for name in BACKENDS:
        caps = backend_class(name).capabilities
        yes = {True: "yes", False: "no"}
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
    commands = parser.add_subparsers(dest="command", required=True)
    backends = commands.add_parser("backends", help="list the backends and what each guarantees")
    backends.set_defaults(func=_backends)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
