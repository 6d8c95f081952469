from __future__ import annotations

import pytest

from bus import BACKENDS
from services.cli import main


def test_backends_prints_every_backend_with_its_guarantees(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["backends"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["backend", "fan-out", "competing", "catch-up", "redelivery"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == set(BACKENDS)
    assert rows["redis-pubsub"][1:5] == ["yes", "no", "no", "no"]
    assert rows["redis-streams"][1:5] == ["yes", "yes", "yes", "yes"]
