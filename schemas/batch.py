"""Batch records: many events under one signature, for bulk revocation.

``publish_many`` (offboarding a tenant, an incident) packs the events bound for
one partition into batch records: one JWS over ``{"v": 1, "type": "batch",
"events": [envelope, ...]}``, at most :data:`MAX_BATCH_EVENTS` events and
:data:`MAX_BATCH_BYTES` bytes, so a consumer verifies one signature per record
instead of one per event. A single ``publish()`` stays one envelope per record;
both kinds share the events topic and :func:`schemas.codec.decode_records` reads
either.

All or nothing: a batch whose signature fails, or any of whose events is
invalid, is refused (dead-lettered) whole: a signature vouches for the whole
record, so one bad event means the record was not made by a correct signer.
Every event inside keeps its own ``event_id`` and ``published_at_ns``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import Envelope

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_EVENTS", "EventBatch"]

MAX_BATCH_EVENTS = 500
"""Most events in one batch record."""
MAX_BATCH_BYTES = 900_000
"""Largest batch payload a publisher builds (under Kafka's ~1 MiB default record limit)."""


class EventBatch(BaseModel):
    """Several envelopes signed together as one record value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    type: Literal["batch"] = "batch"
    events: Annotated[tuple[Envelope, ...], Field(min_length=1, max_length=MAX_BATCH_EVENTS)]
