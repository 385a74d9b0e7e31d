"""The consumers' branch of revocast's one exception tree.

Everything here subclasses :class:`schemas.RevocastError`::

    RevocastError                       (schemas)
    ├── SnapshotError                   a stored snapshot cannot be read: replay instead
    └── TokenRejected                   a bearer token is refused; HTTP status + reason
        ├── MissingTokenError               401, no bearer token at all
        ├── InvalidTokenError               401 invalid_token: malformed, bad signature,
        │                                   expired, wrong iss/aud, algorithm not allowed
        ├── RevokedTokenError               401 invalid_token: the revocation view says so
        ├── StaleClaimsError                401 insufficient_claims, with a claims challenge
        ├── StaleViewError                  503: a privileged request while the view is not
        │                                   ready or older than ``max_staleness``
        └── KeysUnavailableError            503: the token-signing keys (JWKS) cannot be fetched

Infrastructure failures keep the schemas classes (``BrokerUnavailableError``,
``StoreUnavailableError``), so retry-or-give-up is still decided by
``retriable`` in one place.

A :class:`TokenRejected` never carries the token itself: its message and
``description`` are safe to log and to send back to the client.
"""

from __future__ import annotations

import base64
import json
import re

from schemas import RevocastError

__all__ = [
    "InvalidTokenError",
    "KeysUnavailableError",
    "MissingTokenError",
    "RevokedTokenError",
    "SnapshotError",
    "StaleClaimsError",
    "StaleViewError",
    "TokenRejected",
    "claims_challenge",
]

# RFC 6750 3: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
_NOT_QUOTABLE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def _quotable(text: str) -> str:
    return _NOT_QUOTABLE.sub("'", text.replace('"', "'"))[:300]


def claims_challenge(not_before: float) -> str:
    """A CAE claims challenge asking for a token issued at or after ``not_before``.

    The value Entra ID sends in ``WWW-Authenticate: Bearer ... claims="..."``: the
    base64 of ``{"access_token":{"nbf":{"essential":true,"value":"<epoch>"}}}``.
    """
    body = {"access_token": {"nbf": {"essential": True, "value": str(int(not_before) + 1)}}}
    return base64.b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()


class SnapshotError(RevocastError):
    """A snapshot is not one this code wrote (or is corrupt): start from a full replay."""


class TokenRejected(RevocastError):
    """A bearer token is refused.

    ``status`` is the HTTP status to answer with, ``error`` the OAuth error code
    for ``WWW-Authenticate`` (``None``: no code, as RFC 6750 wants for a missing
    token), ``reason`` a stable short code for logs and metrics, and
    ``description`` a human sentence safe to send to the client.
    """

    status: int = 401
    error: str | None = "invalid_token"
    reason: str = "invalid_token"

    def __init__(self, description: str, *, reason: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        if reason is not None:
            self.reason = reason

    def www_authenticate(self, realm: str | None = None) -> str:
        """The ``WWW-Authenticate`` header value for this rejection."""
        params: list[str] = []
        if realm is not None:
            params.append(f'realm="{_quotable(realm)}"')
        if self.error is not None:
            params.append(f'error="{self.error}"')
            params.append(f'error_description="{_quotable(self.description)}"')
        return "Bearer " + ", ".join(params) if params else "Bearer"


class MissingTokenError(TokenRejected):
    error = None
    reason = "missing_token"


class InvalidTokenError(TokenRejected):
    """The token itself is bad: format, signature, algorithm, time or audience."""


class RevokedTokenError(TokenRejected):
    """The token is well-formed but revoked; ``reason`` is the rule that decided."""

    reason = "revoked"


class StaleClaimsError(TokenRejected):
    """The subject's claims changed after the token was issued: fetch a fresh one.

    Answered like Entra ID's continuous access evaluation: ``error="insufficient_claims"``
    and a ``claims`` challenge the client passes to its token endpoint.
    """

    error = "insufficient_claims"
    reason = "claims_changed"

    def __init__(self, description: str, *, not_before: float) -> None:
        super().__init__(description)
        self.not_before = not_before
        self.claims = claims_challenge(not_before)

    def www_authenticate(self, realm: str | None = None) -> str:
        params = [f'realm="{_quotable(realm)}"'] if realm is not None else []
        params += [
            f'error="{self.error}"',
            f'error_description="{_quotable(self.description)}"',
            f'claims="{self.claims}"',
        ]
        return "Bearer " + ", ".join(params)


class StaleViewError(TokenRejected):
    """A privileged request cannot be decided safely: the view is stale or not ready.

    Not the client's fault, hence 503 with ``Retry-After``.
    """

    status = 503
    error = "temporarily_unavailable"
    reason = "stale_view"
    retry_after: int = 1


class KeysUnavailableError(TokenRejected):
    """The JWKS holding the token-signing keys cannot be fetched: not the client's fault."""

    status = 503
    error = "temporarily_unavailable"
    reason = "keys_unavailable"
    retry_after: int = 5
