"""The concept pages: each has a diagram, a way to see it and what you should see; each is
linked from the README; every `orderbus` command they show is one the CLI accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from orderbus.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    "queue-vs-pubsub.md",
    "push-vs-pull.md",
    "consumer-groups.md",
    "delivery-guarantees.md",
    "dead-letters-and-retries.md",
    "outbox-and-inbox.md",
    "scaling-websockets.md",
    "choosing-a-broker.md",
    "dashboard.md",
    "saga.md",
]


def commands(text: str) -> list[list[str]]:
    """`orderbus` argument lists from the page's shell blocks (`make up ARGS=` included)."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line.startswith((".venv/bin/orderbus ", "orderbus ")):
                found.append(shlex.split(line)[1:])
            elif line.startswith("make up"):
                args = re.search(r'ARGS="([^"]*)"', line)
                found.append(["up", *shlex.split(args.group(1) if args else "")])
    return found


@pytest.mark.parametrize("page", PAGES)
def test_each_concept_page_shows_and_tells(page: str) -> None:
    text = (ROOT / "docs" / page).read_text()
    assert "```mermaid" in text, "a diagram"
    if page != "dashboard.md":
        assert "\n## See it\n" in text
        assert "\n## What you should see" in text
    assert f"docs/{page}" in (ROOT / "README.md").read_text(), "linked from the README"
    assert f"]({page})" in (ROOT / "docs" / "README.md").read_text(), "listed in docs/README"


@pytest.mark.parametrize("page", [*PAGES, "README.md"])
def test_every_command_shown_is_one_the_cli_accepts(page: str) -> None:
    parser = build_parser()
    for argv in commands((ROOT / "docs" / page).read_text()):
        parser.parse_args(argv)  # exits (a test failure) on a command the CLI refuses
