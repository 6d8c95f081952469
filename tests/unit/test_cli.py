from __future__ import annotations

import pytest

from bus import BACKENDS
from orderbus.cli import main


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


def test_a_settings_typo_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BUS_BACKEND", "kafak")
    monkeypatch.setenv("BUS_URL", "kafka://user:secret@host:9092")
    assert main(["up"]) == 2
    err = capsys.readouterr().err
    assert "unknown backend 'kafak'; did you mean 'kafka'?" in err
    assert "secret" not in err
    assert "Traceback" not in err


def test_an_unknown_service_gets_a_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--replicas", "biling=2"]) == 2
    assert "did you mean 'billing'?" in capsys.readouterr().err


def test_dlq_on_memory_explains_why_it_cannot(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "list", "--service", "billing", "--backend", "memory"]) == 2
    assert "keeps dead letters inside its running process" in capsys.readouterr().err
