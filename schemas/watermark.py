"""Watermarks: a service instance's word that it applied everything up to an offset.

A consumer instance publishes, to the receipts topic, "I have applied every record
before ``next_offset`` on each of these partitions, as of ``applied_at_ns``". It
sends one after each poll batch that advanced a position (coalesced: at most one
every ``min_interval`` of the engine, a few ms) and one every ``period_s`` while
idle, so a watermark doubles as *presence*: an instance from which nothing has
arrived for a few periods is silent, and is reported as such, never assumed to be
caught up.

The tracker knows each event's (partition, offset) from the publish
acknowledgement, so an event is in force at an instance at the ``applied_at_ns``
of the first watermark of that instance whose ``next_offset`` on that partition is
beyond the event's offset: exact to the batch.

Signed (compact JWS, ``typ`` :data:`WATERMARK_JWS_TYPE`) with the instance's own
Ed25519 key when one is configured; a tracker given a JWKS of service keys accepts
only watermarks that verify, so whoever can write the receipts topic cannot forge
"in force".
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from jwt.utils import base64url_decode
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas.events import TimeNs
from schemas.exceptions import (
    MissingSignatureError,
    SchemaViolationError,
    UndecodableEventError,
)
from schemas.signing import KeySet, SigningKey, is_signed

__all__ = [
    "MAX_REFUSED_PER_WATERMARK",
    "MAX_WATERMARK_PARTITIONS",
    "WATERMARK_JWS_TYPE",
    "Watermark",
]

WATERMARK_JWS_TYPE = "revocast-watermark+jws"
MAX_WATERMARK_PARTITIONS = 10_000
"""Most partitions one watermark may name (a bound on what a reader accepts)."""
MAX_REFUSED_PER_WATERMARK = 1_000
"""Most refused offsets one watermark may list; an instance sends a watermark early
rather than list more."""

_Name = Annotated[
    str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")
]


class Watermark(BaseModel):
    """Applied through ``offsets[p] - 1`` on partition ``p`` of ``topic``, at ``applied_at_ns``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    type: Literal["watermark"] = "watermark"
    service: _Name
    instance: _Name
    engine: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        default="kafka-python", description="Which consumer engine applied the records."
    )
    topic: _Name
    topic_id: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="Kafka's id of the events topic, when the engine knows it."
    )
    offsets: dict[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]] = Field(
        description="partition -> next offset to apply (everything before it is applied)."
    )
    applied_at_ns: TimeNs
    started_at_ns: TimeNs = Field(description="When this instance's run started.")
    period_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=1.0, description="The instance sends a watermark at least this often."
    )
    ready: bool = Field(description="Caught up with the history that existed at its start.")
    refused: dict[Annotated[int, Field(ge=0)], tuple[Annotated[int, Field(ge=0)], ...]] = Field(
        default_factory=dict,
        description="partition -> offsets below ``offsets[partition]`` that this instance "
        "dead-lettered (did not apply) since its previous watermark. Carried in the same "
        "signed record as the offsets it passes, so a reader never counts a refused record "
        "as applied, whatever order the dead-letter topic arrives in.",
    )

    @field_validator("offsets")
    @classmethod
    def _bounded(cls, value: dict[int, int]) -> dict[int, int]:
        if len(value) > MAX_WATERMARK_PARTITIONS:
            raise ValueError(f"more than {MAX_WATERMARK_PARTITIONS} partitions")
        return value

    @field_validator("refused")
    @classmethod
    def _few_refused(cls, value: dict[int, tuple[int, ...]]) -> dict[int, tuple[int, ...]]:
        if sum(len(v) for v in value.values()) > MAX_REFUSED_PER_WATERMARK:
            raise ValueError(f"more than {MAX_REFUSED_PER_WATERMARK} refused offsets")
        return value

    def to_bytes(self, signer: SigningKey | None = None) -> bytes:
        payload = self.model_dump_json().encode()
        return signer.sign(payload, typ=WATERMARK_JWS_TYPE) if signer is not None else payload

    @classmethod
    def from_bytes(
        cls, data: bytes | None, keys: KeySet | None = None, *, require_signature: bool = False
    ) -> Watermark:
        """Parse (and, with ``keys``, verify) one receipts-topic record value.

        With ``require_signature`` an unsigned watermark is refused; a signed one is
        verified whenever ``keys`` are given.
        """
        if not data:
            raise UndecodableEventError("empty watermark")
        if len(data) > 1_048_576:
            raise UndecodableEventError("watermark larger than 1 MiB")
        if is_signed(data):
            if keys is None:
                if require_signature:
                    raise SchemaViolationError("signed watermark but no service keys configured")
                # No trust configured: read what it says, unverified.
                payload = base64url_decode(data.split(b".")[1])
            else:
                payload = keys.verify(data, typ=WATERMARK_JWS_TYPE)
        elif require_signature:
            raise MissingSignatureError("watermark is not signed (service keys are configured)")
        else:
            payload = data
        try:
            return cls.model_validate(json.loads(payload))
        except (ValueError, RecursionError) as exc:
            if isinstance(exc, ValidationError):
                err = exc.errors()[0]
                field = ".".join(str(p) for p in err["loc"]) or "watermark"
                raise SchemaViolationError(f"{field}: {err['msg']}", field=field) from None
            raise UndecodableEventError(f"watermark is not JSON: {exc}") from None

    def covers(self, partition: int, offset: int) -> bool:
        """Whether this watermark passes the record at ``offset`` of ``partition`` (applied,
        unless listed in :attr:`refused` here or in an earlier watermark of the run)."""
        return self.offsets.get(partition, 0) > offset
