"""The one exception tree of revocast.

Every error revocast raises on purpose is a :class:`RevocastError`::

    RevocastError
    ├── InvalidEventError            bad input: never applied, dead-lettered, never retried
    │   ├── UndecodableEventError        not JSON / not a JWS at all
    │   ├── UnsupportedVersionError      an envelope version this code does not speak
    │   ├── UnknownEventTypeError        a ``type`` this code does not know
    │   ├── SchemaViolationError         a field missing or wrong (names the field)
    │   └── SignatureError
    │       ├── MissingSignatureError    unsigned where a signature is required
    │       ├── UnknownKeyError          signed with a ``kid`` nobody trusts
    │       └── BadSignatureError        the signature does not verify
    ├── ConfigError                  a setting is wrong; names the setting
    └── InfrastructureError          something outside is down (``retriable = True``)
        ├── BrokerUnavailableError       Kafka did not answer
        ├── PublishError                 the broker did not acknowledge an event
        └── StoreUnavailableError        Redis did not answer

The packages above the contract extend the tree under the same root:
``producer.exceptions`` (``NotInForceError``, ``BulkPublishError`` under
``PublishError``) and ``consumers.exceptions`` (``TokenRejected`` and its HTTP-mapped
family: revoked, stale claims, stale view, invalid or missing token).

``InvalidEventError.reason`` is a short, stable code (``"bad_signature"``...) used
as the dead-letter reason and as a metrics label. ``retriable`` says whether trying
the same thing again can help, so retry-or-dead-letter is decided in one place.
"""

from __future__ import annotations

__all__ = [
    "BadSignatureError",
    "BrokerUnavailableError",
    "ConfigError",
    "InfrastructureError",
    "InvalidEventError",
    "MissingSignatureError",
    "PublishError",
    "RevocastError",
    "SchemaViolationError",
    "SignatureError",
    "StoreUnavailableError",
    "UndecodableEventError",
    "UnknownEventTypeError",
    "UnknownKeyError",
    "UnsupportedVersionError",
]


class RevocastError(Exception):
    """Root of every error revocast raises on purpose."""

    retriable: bool = False


class InvalidEventError(RevocastError):
    """An event that must not be applied. ``reason`` is a stable short code."""

    reason: str = "invalid"


class UndecodableEventError(InvalidEventError):
    reason = "undecodable"


class UnsupportedVersionError(InvalidEventError):
    reason = "unsupported_version"


class UnknownEventTypeError(InvalidEventError):
    reason = "unknown_type"


class SchemaViolationError(InvalidEventError):
    """A field is missing or invalid; ``field`` names it (dotted path)."""

    reason = "schema_invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SignatureError(InvalidEventError):
    reason = "bad_signature"


class MissingSignatureError(SignatureError):
    reason = "missing_signature"


class UnknownKeyError(SignatureError):
    reason = "unknown_key"


class BadSignatureError(SignatureError):
    reason = "bad_signature"


class ConfigError(RevocastError):
    """A setting is wrong. The message names the setting and what to do."""


class InfrastructureError(RevocastError):
    """Something revocast depends on is unavailable; trying again may help."""

    retriable = True


class BrokerUnavailableError(InfrastructureError):
    """Kafka did not answer in time."""


class PublishError(InfrastructureError):
    """The broker did not acknowledge an event: it must not be reported as published."""


class StoreUnavailableError(InfrastructureError):
    """Redis did not answer in time."""
