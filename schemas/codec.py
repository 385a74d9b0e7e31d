"""Bytes on the topic <-> :class:`Envelope`, with the signature checked in between.

``decode`` is the single boundary where outside input becomes a trusted event.
Everything it raises is an :class:`InvalidEventError` whose ``reason`` becomes the
dead-letter reason; pydantic's internals are kept out of the message.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from schemas.batch import MAX_BATCH_EVENTS, EventBatch
from schemas.events import EVENT_TYPES, SCHEMA_VERSION, Envelope
from schemas.exceptions import (
    InvalidEventError,
    MissingSignatureError,
    SchemaViolationError,
    UndecodableEventError,
    UnknownEventTypeError,
    UnsupportedVersionError,
)
from schemas.signing import KeySet, SigningKey, is_signed

__all__ = ["MAX_RECORD_BYTES", "decode", "decode_records", "encode", "encode_batch"]

MAX_RECORD_BYTES = 1_048_576
"""Largest record value decoded (Kafka's default ``max.message.bytes`` is about 1 MiB)."""


def encode(envelope: Envelope, signer: SigningKey | None) -> bytes:
    """The record value for ``envelope``: a JWS when ``signer`` is given, else JSON."""
    payload = envelope.model_dump_json().encode()
    return signer.sign(payload) if signer is not None else payload


def encode_batch(envelopes: list[Envelope], signer: SigningKey | None) -> bytes:
    """One record value carrying ``envelopes`` under one signature (see :mod:`schemas.batch`)."""
    payload = EventBatch(events=tuple(envelopes)).model_dump_json().encode()
    return signer.sign(payload) if signer is not None else payload


def decode(data: bytes | None, keys: KeySet | None, *, require_signature: bool = True) -> Envelope:
    """Verify and parse one single-event record value (a batch record is refused).

    With ``require_signature`` (the default, and the only safe choice in
    production) an unsigned value raises :class:`MissingSignatureError`, and a
    signed one must verify against ``keys``.
    """
    return parse(_verified(data, keys, require_signature))


def decode_records(
    data: bytes | None, keys: KeySet | None, *, require_signature: bool = True
) -> list[Envelope]:
    """Verify once and parse a record value that is one envelope or a batch of them.

    A batch is all or nothing: any invalid event refuses the whole record, naming
    the event's index (``events.3.event.session_id: ...``).
    """
    payload = _verified(data, keys, require_signature)
    fast = _fast(payload)
    if fast is not None:
        return fast
    raw = _json_object(payload)
    if raw.get("type") != "batch":
        return [_validate(raw)]
    events = raw.get("events")
    if not isinstance(events, list) or not events:
        raise SchemaViolationError("events: a batch needs a non-empty list", field="events")
    if len(events) > MAX_BATCH_EVENTS:
        raise SchemaViolationError(
            f"events: {len(events)} events; a batch holds at most {MAX_BATCH_EVENTS}",
            field="events",
        )
    if raw.get("v") != SCHEMA_VERSION:
        raise UnsupportedVersionError(f"batch version {raw.get('v')!r} is not supported")
    if set(raw) - {"v", "type", "events"}:
        raise SchemaViolationError("batch: unknown fields", field="batch")
    out = []
    for i, event in enumerate(events):
        try:
            out.append(_validate(event))
        except InvalidEventError as exc:
            field = f"events.{i}.{getattr(exc, 'field', '') or ''}".rstrip(".")
            if isinstance(exc, SchemaViolationError):
                raise SchemaViolationError(f"events.{i}: {exc}", field=field) from None
            raise type(exc)(f"events.{i}: {exc}") from None
    return out


def _verified(data: bytes | None, keys: KeySet | None, require_signature: bool) -> bytes:
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
    return payload


def _fast(payload: bytes) -> list[Envelope] | None:
    """The valid record, parsed by pydantic-core's JSON parser in one pass; ``None`` when
    it is not valid, so that the careful path below names what is wrong.

    About a third cheaper than ``json.loads`` + ``model_validate`` for the common case (a
    valid event); identical results, checked by ``tests/fuzz/test_fuzz_decode.py``.
    """
    try:
        if b'"batch"' in payload:
            return list(EventBatch.model_validate_json(payload).events)
        return [Envelope.model_validate_json(payload)]
    except (ValidationError, ValueError, RecursionError):
        return None


def parse(payload: bytes) -> Envelope:
    """Parse verified envelope JSON, naming what is wrong when it is wrong."""
    fast = _fast(payload)
    if fast is not None and len(fast) == 1 and b'"batch"' not in payload:
        return fast[0]
    raw = _json_object(payload)
    if raw.get("type") == "batch":
        raise SchemaViolationError(
            "a batch record where one event was expected (use decode_records)", field="type"
        )
    return _validate(raw)


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        raw: Any = json.loads(payload)
    except RecursionError:
        raise UndecodableEventError("payload nests too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UndecodableEventError(f"payload is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise UndecodableEventError("payload is not a JSON object")
    return raw


def _validate(raw: Any) -> Envelope:
    if not isinstance(raw, dict):
        raise UndecodableEventError("an envelope is not a JSON object")
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
