"""The guard on admin endpoints: anything over HTTP that changes how the system behaves or
replays data (dashboard controls, dead-letter replay) needs `Authorization: Bearer <token>`.

The token comes from `ORDERBUS_ADMIN_TOKEN`. Unset, admin endpoints answer 403: a system
started without one has no admin surface at all, rather than an open one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Header, HTTPException, status
from pydantic import SecretStr

ADMIN_TOKEN_ENV = "ORDERBUS_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a token


def token_matches(expected: SecretStr | None, presented: str | None) -> bool:
    """Constant-time comparison, so the token can't be guessed a byte at a time."""
    if expected is None or not presented:
        return False
    return hmac.compare_digest(presented.encode(), expected.get_secret_value().encode())


def report_signature(token: SecretStr, signed_at: datetime, *fields: str) -> str:
    """What an instance puts on its activity report so that a dashboard holding the same token
    believes the address in it: anything that can publish on the broker could name another."""
    stamp = signed_at.astimezone(UTC).isoformat(timespec="microseconds")
    message = "\n".join((stamp, *fields)).encode()
    return hmac.new(token.get_secret_value().encode(), message, hashlib.sha256).hexdigest()


def report_signed(
    token: SecretStr, signature: str | None, signed_at: datetime | None, *fields: str
) -> bool:
    """Whether `signature` is this token's over `signed_at` and `fields` (constant time)."""
    if not signature or signed_at is None:
        return False
    expected = report_signature(token, signed_at, *fields)
    return hmac.compare_digest(signature.encode(), expected.encode())


def admin_guard(token: SecretStr | None) -> Callable[[str | None], None]:
    """A FastAPI dependency: `Depends(admin_guard(runtime.settings.admin_token))`."""

    def require_admin(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"admin endpoints are disabled: set {ADMIN_TOKEN_ENV} to enable them",
            )
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token_matches(token, presented.strip()):
            # The message never echoes what was presented: it may be a near-miss of the token.
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                f"admin token required: send Authorization: Bearer <{ADMIN_TOKEN_ENV}>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_admin
