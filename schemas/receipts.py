"""Receipts: a service's word that it applied an event, and when.

A consumer publishes one receipt per applied event to the receipts topic. The
producer's tracker and the benchmark read them: ``applied_at_ns -
published_at_ns`` is the propagation latency to that instance. Both clocks are
``time.time_ns()``; across hosts the figure is only as good as their clock sync.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import TimeNs

__all__ = ["Receipt"]

_Name = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")]


class Receipt(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    service: _Name
    instance: _Name
    flavor: Annotated[str, Field(max_length=64)] = Field(
        default="kafka-python", description="Which consumer implementation applied it."
    )
    event_id: uuid.UUID
    event_type: _Name
    published_at_ns: TimeNs
    applied_at_ns: TimeNs
    partition: Annotated[int, Field(ge=0)]
    offset: Annotated[int, Field(ge=0)]

    @property
    def latency_ns(self) -> int:
        return self.applied_at_ns - self.published_at_ns

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Receipt:
        return cls.model_validate_json(data)
