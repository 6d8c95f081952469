"""The progress line of the long commands: in place on a terminal, nothing in a pipe."""

from __future__ import annotations

import io

import pytest

from orderbus import progress
from orderbus.progress import Progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_line_rewritten_in_place_and_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress, "MIN_INTERVAL_S", 0)
    stream = Tty()
    line = Progress("soak: orders placed", 3, stream)
    for done in (1, 2, 3):
        line.update(done, "(0 replicas killed)")
    line.done()
    assert stream.getvalue() == (
        "\rsoak: orders placed: 1/3 (0 replicas killed)"
        "\rsoak: orders placed: 2/3 (0 replicas killed)"
        "\rsoak: orders placed: 3/3 (0 replicas killed)\n"
    )


def test_updates_a_moment_apart_are_skipped_but_the_last_step_is_shown() -> None:
    stream = Tty()
    line = Progress("bench: pairs run", 100, stream)
    for done in range(101):
        line.update(done)
    assert stream.getvalue().count("\r") == 2  # the first, then the last (all within 0.2 s)
    assert stream.getvalue().endswith("\rbench: pairs run: 100/100")


def test_a_shorter_line_blanks_what_the_longer_one_left() -> None:
    stream = Tty()
    line = Progress("x", None, stream)
    line.update(1, "a long note")
    line._last = 0  # as if a moment had passed
    line.update(2)
    assert stream.getvalue().endswith("\rx: 2" + " " * len(" a long note") + "")


def test_a_pipe_gets_nothing() -> None:
    stream = io.StringIO()
    line = Progress("soak: orders placed", 3, stream)
    line.update(3)
    line.done()
    assert stream.getvalue() == ""
