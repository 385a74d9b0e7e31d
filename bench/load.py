"""Publish revocations at a target rate, honestly: what was asked, what was achieved.

The publisher is the producer's :class:`~producer.RevocationPublisher` (signed,
idempotent, ``acks=all``). Pacing is open-loop against a schedule: event ``i`` is
due at ``i / rate`` seconds after the start; whenever events are due they are
sent together with one ``publish_many`` (which returns once the broker has
acknowledged all of them). A publisher that falls behind catches up in bigger
batches rather than silently lowering the rate; how far behind it fell is
reported (``max_lag_ms``), as is the achieved rate (acknowledged events / wall
time from the first send to the last acknowledgement). A step that cannot send
all its events within 1.5x its duration (+5 s) stops there and says so.

Each event's ``published_at_ns`` is stamped by the envelope just before signing;
the latencies measured from it therefore include signing and the send. The same
pacing drives the peers (:mod:`bench.peers`) through a plain ``send`` function,
so revocast and its alternatives see the same schedule.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.plan import RateStep, events_due
from producer import BulkPublishError, RevocationPublisher
from schemas import SessionRevoked, Subject, SubjectKind, in_seconds

__all__ = ["EventFactory", "PublishOutcome", "SendResult", "Sender", "publish_paced",
           "revocast_sender"]


@dataclass
class SendResult:
    """What one batch send achieved: acknowledged events and how many failed."""

    published: list[tuple[uuid.UUID, int, int, int]]
    """(event id, published_at_ns, partition, offset) per acknowledged event."""
    failed: int = 0


Sender = Callable[[list[SessionRevoked]], SendResult]


def revocast_sender(publisher: RevocationPublisher) -> Sender:
    """Send a batch with ``publish_many`` (signed, acks=all); returns once acknowledged."""

    def send(events: list[SessionRevoked]) -> SendResult:
        failed = 0
        try:
            results = publisher.publish_many(events)
        except BulkPublishError as exc:
            results = list(exc.published)
            failed = len(exc.failed)
        return SendResult(
            [(p.event_id, p.published_at_ns, p.partition, p.offset) for p in results], failed
        )

    return send


class EventFactory:
    """Session revocations with unique session ids, spread over ``subjects`` users."""

    def __init__(self, tag: str, *, seed: int = 0, subjects: int = 10_000) -> None:
        self.tag = tag
        self._rng = random.Random(seed)
        self._subjects = [Subject(id=f"user-{i}", kind=SubjectKind.HUMAN) for i in range(subjects)]
        self._n = 0

    def make(self, count: int, *, lifetime_s: float = 7200.0) -> list[SessionRevoked]:
        expires = in_seconds(lifetime_s)
        out = []
        choice = self._rng.choice
        for _ in range(count):
            self._n += 1
            out.append(
                SessionRevoked(
                    subject=choice(self._subjects),
                    session_id=f"{self.tag}-{self._n}",
                    expires_at=expires,
                    reason="bench",
                )
            )
        return out


@dataclass
class PublishOutcome:
    target_rate: int | None
    planned: int
    duration_s: float
    published: dict[uuid.UUID, int] = field(default_factory=dict)
    """event id -> published_at_ns, for every acknowledged event."""
    positions: dict[uuid.UUID, tuple[int, int]] = field(default_factory=dict)
    """event id -> (partition, offset) from the acknowledgement (-1, -1 for peers)."""
    failed: int = 0
    elapsed_s: float = 0.0
    batches: int = 0
    max_lag_s: float = 0.0
    truncated: bool = False

    @property
    def achieved_rate(self) -> float:
        return len(self.published) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        achieved = self.achieved_rate
        return {
            "target_rate": self.target_rate if self.target_rate is not None else "max",
            "planned_events": self.planned,
            "published_events": len(self.published),
            "failed_events": self.failed,
            "publish_elapsed_s": round(self.elapsed_s, 3),
            "achieved_rate": round(achieved, 1),
            "achieved_vs_target": (
                round(achieved / self.target_rate, 4) if self.target_rate else None
            ),
            "publish_batches": self.batches,
            "max_lag_ms": round(self.max_lag_s * 1000, 2),
            "truncated": self.truncated,
        }


def publish_paced(
    send: Sender | RevocationPublisher,
    step: RateStep,
    factory: EventFactory,
    *,
    max_batch: int,
    stop: threading.Event | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> PublishOutcome:
    """Publish ``step``'s events on schedule; see the module docstring."""
    if isinstance(send, RevocationPublisher):
        send = revocast_sender(send)
    total = step.planned_events
    outcome = PublishOutcome(step.rate, total, step.duration)
    rate = step.rate
    hard_limit = step.duration if rate is None else step.duration * 1.5 + 5.0
    sent = 0
    t0 = time.monotonic()
    while sent < total:
        if stop is not None and stop.is_set():
            outcome.truncated = True
            break
        now = time.monotonic() - t0
        if now >= hard_limit:
            # At max rate the duration is the plan, not a failure.
            outcome.truncated = rate is not None
            break
        if rate is None:
            count = min(max_batch, total - sent)
        else:
            due = events_due(now, rate, total)
            count = min(max_batch, due - sent)
            if count <= 0:
                wait = sent / rate - now
                if wait > 0:
                    time.sleep(wait)
                continue
            outcome.max_lag_s = max(outcome.max_lag_s, now - sent / rate)
        events = factory.make(count)
        result = send(events)
        outcome.failed += result.failed
        for event_id, published_ns, partition, offset in result.published:
            outcome.published[event_id] = published_ns
            outcome.positions[event_id] = (partition, offset)
        sent += count
        outcome.batches += 1
        outcome.elapsed_s = time.monotonic() - t0
        if on_progress is not None:
            on_progress(sent)
    outcome.elapsed_s = max(outcome.elapsed_s, 1e-9) if outcome.published else 0.0
    return outcome
