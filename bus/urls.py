"""Broker URL checks and redaction: a password never reaches a log line or an error."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact(url: str) -> str:
    """`amqp://guest:secret@host/` -> `amqp://guest:***@host/`; anything unparsable -> `***`."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "***"


def check_url(backend: str, url: str, schemes: tuple[str, ...]) -> str:
    """Return `url` if its scheme suits `backend`, else raise naming both (password redacted)."""
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme not in schemes or not port_ok:
        wanted = " or ".join(f"{s}://" for s in schemes)
        raise ValueError(
            f"BUS_URL {redact(url)!r} does not suit backend {backend!r}: expected {wanted}host:port"
        )
    if parts.scheme != "memory" and not parts.hostname and parts.scheme != "unix":
        raise ValueError(f"BUS_URL {redact(url)!r} for backend {backend!r} names no host")
    return url
