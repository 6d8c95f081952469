"""Broker URL checks and redaction: a password never reaches a log line or an error."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from bus.descriptor import Backend

SECRET_WORDS = ("pass", "token", "secret", "key", "auth", "cred", "nkey", "jwt")
"""A query parameter whose name holds one of these has its value redacted."""


def redact(url: str) -> str:
    """Every credential a broker URL can carry, replaced by `***`: the password of
    `user:password@` (`amqp://guest:***@host/`), a user alone (a NATS token is written
    `nats://TOKEN@host`), and the value of any query parameter named like a secret
    (`?password=`, `?token=`...). Anything unparsable -> `***`."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hosts = netloc.rpartition("@")
            user, has_password, _ = userinfo.partition(":")
            netloc = f"{user}:***@{hosts}" if has_password else f"***@{hosts}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, "***" if any(w in k.lower() for w in SECRET_WORDS) else v) for k, v in pairs],
                safe="*",
            )
        return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=""))
    except ValueError:
        return "***"


def _port_ok(host: str) -> bool:
    """`host[:port]` with a port, if any, that a socket can have (raises on one that is no
    number, as urlsplit does)."""
    port = urlsplit(f"//{host}").port
    return port is None or 0 < port < 65536


def check_url(info: Backend, url: str) -> str:
    """Return `url` if it suits the backend, else raise naming why (credentials redacted)."""
    backend, schemes = info.name, info.schemes
    try:
        parts = urlsplit(url)
        hosts = parts.netloc.rpartition("@")[2].split(",")
        port_ok = all(_port_ok(host) for host in hosts)
    except ValueError:
        parts, hosts, port_ok = None, [], False
    for scheme, why in info.refused:
        if parts is not None and parts.scheme == scheme:
            raise ValueError(f"BUS_URL {redact(url)!r}: {scheme}:// is not supported: {why}")
    if parts is not None and not info.credentials and "@" in parts.netloc:
        raise ValueError(
            f"BUS_URL {redact(url)!r}: backend {backend!r} takes no credentials in its URL "
            "(they would be ignored, or sent in plaintext)"
        )
    if len(hosts) > 1 and not info.many_hosts:
        raise ValueError(f"BUS_URL {redact(url)!r}: backend {backend!r} takes one host:port")
    if parts is None or parts.scheme not in schemes or not port_ok:
        wanted = " or ".join(f"{s}://" for s in schemes)
        raise ValueError(
            f"BUS_URL {redact(url)!r} does not suit backend {backend!r}: expected {wanted}host:port"
        )
    if parts.scheme not in ("memory", "unix") and not all(
        urlsplit(f"//{h}").hostname for h in hosts
    ):
        raise ValueError(f"BUS_URL {redact(url)!r} for backend {backend!r} names no host")
    return url
