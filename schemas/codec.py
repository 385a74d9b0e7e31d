"""Bytes on the topic <-> :class:`Envelope`, with the signature checked in between.

``decode`` is the single boundary where outside input becomes a trusted event.
Everything it raises is an :class:`InvalidEventError` whose ``reason`` becomes the
dead-letter reason; pydantic's internals are kept out of the message.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from schemas.events import EVENT_TYPES, SCHEMA_VERSION, Envelope
from schemas.exceptions import (
    MissingSignatureError,
    SchemaViolationError,
    UndecodableEventError,
    UnknownEventTypeError,
    UnsupportedVersionError,
)
from schemas.signing import KeySet, SigningKey, is_signed

__all__ = ["MAX_RECORD_BYTES", "decode", "encode"]

MAX_RECORD_BYTES = 1_048_576
"""Largest record value decoded (Kafka's default ``max.message.bytes`` is about 1 MiB)."""


def encode(envelope: Envelope, signer: SigningKey | None) -> bytes:
    """The record value for ``envelope``: a JWS when ``signer`` is given, else JSON."""
    payload = envelope.model_dump_json().encode()
    return signer.sign(payload) if signer is not None else payload


def decode(data: bytes | None, keys: KeySet | None, *, require_signature: bool = True) -> Envelope:
    """Verify and parse one record value.

    With ``require_signature`` (the default, and the only safe choice in
    production) an unsigned value raises :class:`MissingSignatureError`, and a
    signed one must verify against ``keys``.
    """
    if not data:
        raise UndecodableEventError("empty record value")
    if len(data) > MAX_RECORD_BYTES:
        raise UndecodableEventError(
            f"record value is {len(data)} bytes; the limit is {MAX_RECORD_BYTES}"
        )
    if is_signed(data):
        if keys is None:
            raise MissingSignatureError("event is signed but no trusted keys are configured")
        payload = keys.verify(data)
    elif require_signature:
        if not data.lstrip().startswith(b"{"):
            # Neither a JWS nor JSON: garbage, not an unsigned event.
            raise UndecodableEventError("record value is neither a JWS nor a JSON object")
        raise MissingSignatureError("event is not signed (a JWS is required)")
    else:
        payload = data
    return parse(payload)


def parse(payload: bytes) -> Envelope:
    """Parse verified envelope JSON, naming what is wrong when it is wrong."""
    try:
        raw: Any = json.loads(payload)
    except RecursionError:
        raise UndecodableEventError("payload nests too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UndecodableEventError(f"payload is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise UndecodableEventError("payload is not a JSON object")
    version = raw.get("v")
    if version != SCHEMA_VERSION:
        raise UnsupportedVersionError(
            f"envelope version {version!r} is not supported (this consumer reads v{SCHEMA_VERSION})"
        )
    event = raw.get("event")
    if isinstance(event, dict) and event.get("type") not in EVENT_TYPES:
        raise UnknownEventTypeError(f"unknown event type {event.get('type')!r}")
    try:
        return Envelope.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "envelope"
        raise SchemaViolationError(f"{field}: {err['msg']}", field=field) from None
