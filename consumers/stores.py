"""What a consumer can persist to: a shared view and snapshots (protocols + record).

:class:`RevocationConsumer` takes either or both, and :mod:`consumers.redis_store`
implements them on Redis:

* a :class:`SharedView` receives every applied event (write-through), so a
  service's replicas, or a process without its own consumer, can read one view;
* a :class:`SnapshotStore` keeps a :class:`ConsumerSnapshot`: the state *and*
  the per-partition offsets it reflects, so a restarted instance warms up from
  it and replays only the records after those offsets.

Guarantee: a snapshot's state includes every event before its offsets (it is
taken in the consumer thread between batches). Because applying is a join,
replaying records the state already holds is harmless; so any snapshot, however
old, plus a replay from its offsets gives the complete view *of the same log*.

A snapshot is tied to the events topic's identity: it records Kafka's topic id
(a UUID the broker assigns when the topic is created), and
:meth:`ConsumerSnapshot.refusal` refuses one taken of another incarnation of the
topic (deleted and recreated under the same name: its offsets would point into a
different log), one without a topic id while the topic's id is known, and one
whose offsets lie beyond the topic's end. A refused snapshot costs only a full
replay.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from consumers.exceptions import SnapshotError
from consumers.state import RevocationState
from schemas import Envelope

__all__ = ["ConsumerSnapshot", "SharedView", "SnapshotStore"]


@dataclass(frozen=True)
class ConsumerSnapshot:
    """A state plus the next offset to read on each partition of ``topic``."""

    topic: str
    offsets: dict[int, int]
    state: dict[str, Any]
    """:meth:`RevocationState.snapshot` output."""
    taken_at: float = field(default_factory=time.time)
    topic_id: str | None = None
    """Kafka's id of ``topic`` when the snapshot was taken (base64url, as Kafka prints it)."""

    def refusal(self, topic_id: str | None, end: Mapping[int, int]) -> str | None:
        """Why this snapshot must not seed a consumer of the topic as it is now, or ``None``.

        ``topic_id`` is the topic's id now (``None`` when the client cannot tell),
        ``end`` its end offset per partition.
        """
        if topic_id is not None and self.topic_id != topic_id:
            if self.topic_id is None:
                return f"it records no topic id (the topic {self.topic!r} is {topic_id})"
            return (
                f"it was taken of topic id {self.topic_id}, but {self.topic!r} is now "
                f"{topic_id} (the topic was recreated)"
            )
        ahead = {p: o for p, o in self.offsets.items() if o > end.get(p, 0)}
        if ahead:
            # Offsets beyond the end: the topic was recreated or truncated, so the
            # snapshot describes another log.
            return f"its offsets {ahead} are beyond the topic's end {dict(end)}"
        return None

    def to_json(self) -> bytes:
        """Compact JSON, encoded a chunk at a time.

        ``json.dumps`` holds the GIL for the whole call (about 4 s for a million
        entries on a small machine), which would stall the consumer thread;
        chunks of :data:`_CHUNK` entries bound each stall to a few milliseconds.
        """
        parts: list[str] = []
        _encode(
            {
                "topic": self.topic,
                "offsets": {str(p): o for p, o in self.offsets.items()},
                "taken_at": self.taken_at,
                "topic_id": self.topic_id,
                "state": self.state,
            },
            parts,
        )
        return "".join(parts).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ConsumerSnapshot:
        try:
            raw = json.loads(data)
            offsets = {int(p): int(o) for p, o in raw["offsets"].items()}
            if any(o < 0 for o in offsets.values()):
                raise ValueError("negative offset")
            topic_id = raw.get("topic_id")
            if topic_id is not None and not isinstance(topic_id, str):
                raise ValueError("topic_id is not a string")
            return cls(
                topic_id=topic_id,
                topic=str(raw["topic"]),
                offsets=offsets,
                state=dict(raw["state"]),
                taken_at=float(raw["taken_at"]),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SnapshotError(f"snapshot is corrupt: {exc}") from None

    def restore(self, now: float | None = None) -> RevocationState:
        return RevocationState.from_snapshot(self.state, now=now)


_CHUNK = 2000


def _encode(value: Any, out: list[str]) -> None:
    if not isinstance(value, dict) or (
        len(value) <= _CHUNK and not any(isinstance(v, dict) for v in value.values())
    ):
        out.append(json.dumps(value, separators=(",", ":")))
        return
    out.append("{")
    items = list(value.items())
    first = True
    for start in range(0, len(items), _CHUNK):
        chunk = items[start : start + _CHUNK]
        nested = [(k, v) for k, v in chunk if isinstance(v, dict)]
        flat = {k: v for k, v in chunk if not isinstance(v, dict)}
        if flat:
            out.append(("" if first else ",") + json.dumps(flat, separators=(",", ":"))[1:-1])
            first = False
        for key, sub in nested:
            out.append(("" if first else ",") + json.dumps(str(key)) + ":")
            first = False
            _encode(sub, out)
        time.sleep(0)  # let the consumer thread run between chunks
    out.append("}")


class SharedView(Protocol):
    """Receives every event a consumer applies (called off the apply path)."""

    def apply(self, envelope: Envelope) -> None: ...


class SnapshotStore(Protocol):
    def load(self, topic: str) -> ConsumerSnapshot | None: ...

    def save(self, snapshot: ConsumerSnapshot) -> None: ...
