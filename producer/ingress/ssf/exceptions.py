"""The SSF receiver's branch of revocast's one exception tree::

    RevocastError
    ├── InvalidEventError
    │   └── SetRejected            a SET refused; ``err`` is the RFC 8935 / 8936 error code
    └── InfrastructureError
        └── TransmitterUnavailableError   the transmitter (JWKS, discovery, poll,
                                          stream management) did not answer usably

``SetRejected.err`` is one of :data:`ERR_CODES` (RFC 8935 §2.4, plus SSF 1.0's
``invalid_state`` for a verification event with the wrong state); ``description`` is the
human-readable reason sent back to the transmitter. Neither ever contains a token.
"""

from __future__ import annotations

from typing import Final, Literal

from schemas.exceptions import InfrastructureError, InvalidEventError

__all__ = ["ERR_CODES", "ErrCode", "SetRejected", "TransmitterUnavailableError", "escape"]

ErrCode = Literal[
    "invalid_request",
    "invalid_key",
    "invalid_issuer",
    "invalid_audience",
    "authentication_failed",
    "access_denied",
    "invalid_state",
]
ERR_CODES: Final[frozenset[str]] = frozenset(ErrCode.__args__)  # type: ignore[attr-defined]


class SetRejected(InvalidEventError):
    """A SET (or its delivery) was refused: never applied, answered with ``err``."""

    reason = "set_rejected"

    def __init__(self, err: ErrCode, description: str) -> None:
        super().__init__(f"{err}: {description}")
        self.err: ErrCode = err
        self.description = description

    def body(self) -> dict[str, str]:
        """The RFC 8935 §2.3 error body (and RFC 8936 ``setErrs`` entry)."""
        return {"err": self.err, "description": self.description}


class TransmitterUnavailableError(InfrastructureError):
    """The transmitter did not answer, or answered with something unusable; retry later."""


def escape(value: object, limit: int = 128) -> str:
    """An id from outside, safe for one log line or error description (control characters
    escaped) and bounded to ``limit`` characters."""
    return str(value)[:limit].encode("unicode_escape").decode("ascii")
