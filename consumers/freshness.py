"""How fresh a consumer's view is, per partition, and the guard for privileged checks.

Every record on the events topic (a revocation or a heartbeat) carries its
publish time. The producer side publishes a heartbeat into every partition every
second, so "the newest publish time seen on partition *p*" tells a consumer that
it has applied everything published to *p* up to then. The view's *staleness*
on *p* is ``now - that time``.

Guarantee: :meth:`FreshnessGuard.denial` returns ``None`` only when the
consumer has caught up with the history that existed when it started *and*
every partition has a heartbeat or event published less than ``max_staleness``
seconds ago. Anything else (not ready, a partition never heard from, a silent
partition) is a reason to deny a privileged request: fail closed, and say why.

Not guaranteed: publish times come from the producer's clock, so staleness is
only as accurate as clock sync between producer and consumer hosts; and a
partition whose heartbeats stop looks stale even if nothing was revoked there
(which is the point: silence is not evidence of "nothing revoked").
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

__all__ = ["FreshnessGuard", "FreshnessReport", "FreshnessSource", "PartitionFreshness"]


class FreshnessSource(Protocol):
    """Anything that can say why a privileged check must be denied now (or ``None``)."""

    def denial(self, now: float | None = None) -> str | None: ...


@dataclass(frozen=True, slots=True)
class PartitionFreshness:
    partition: int
    last_published_at: float | None
    """Newest publish time (epoch seconds) of a heartbeat or event applied from here."""
    last_received_at: float | None
    """When this consumer received that newest record (epoch seconds)."""
    staleness: float
    """``now - last_published_at``; infinite when nothing was seen yet."""
    offset: int | None
    """Next offset to read (everything before it has been handled)."""
    lag: int | None
    """Records between ``offset`` and the last known high watermark."""


@dataclass(frozen=True, slots=True)
class FreshnessReport:
    ready: bool
    max_staleness: float
    checked_at: float
    partitions: tuple[PartitionFreshness, ...]
    reason: str | None
    """Why a privileged check would be denied now, or ``None`` when it would pass."""

    @property
    def fresh(self) -> bool:
        return self.reason is None

    @property
    def staleness(self) -> float:
        """The worst partition's staleness (infinite with no partitions)."""
        return max((p.staleness for p in self.partitions), default=math.inf)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (infinite staleness becomes ``None``)."""
        out = asdict(self)
        for part in out["partitions"]:
            if math.isinf(part["staleness"]):
                part["staleness"] = None
        out["fresh"] = self.fresh
        return out


class FreshnessGuard:
    """Per-partition freshness of one consumer, and the privileged-check verdict.

    Written by the consumer thread, read by request threads; each value is a
    single ``dict`` store, so readers never see a torn update.

        guard = FreshnessGuard(max_staleness=5.0)
        guard.set_partitions([0, 1, 2])
        guard.observe(0, published_at=time.time())
        guard.denial()   # 'revocation view not ready: ...'
    """

    def __init__(self, max_staleness: float = 5.0) -> None:
        if not max_staleness > 0:
            raise ValueError("max_staleness must be positive (seconds)")
        self.max_staleness = float(max_staleness)
        self._ready = False
        self._not_ready_reason = "the consumer has not started"
        self._partitions: tuple[int, ...] = ()
        self._published: dict[int, float] = {}
        self._received: dict[int, float] = {}
        self._offsets: dict[int, int] = {}
        self._lags: dict[int, int] = {}

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def partitions(self) -> tuple[int, ...]:
        return self._partitions

    def set_partitions(self, partitions: Iterable[int]) -> None:
        self._partitions = tuple(sorted(set(partitions)))

    def set_not_ready(self, reason: str) -> None:
        self._ready = False
        self._not_ready_reason = reason

    def mark_ready(self) -> None:
        self._ready = True

    def observe(
        self, partition: int, published_at: float, received_at: float | None = None
    ) -> None:
        """A record published at ``published_at`` was applied from ``partition``."""
        if published_at > self._published.get(partition, -math.inf):
            self._published[partition] = published_at
            self._received[partition] = time.time() if received_at is None else received_at

    def set_position(self, partition: int, offset: int, lag: int | None = None) -> None:
        self._offsets[partition] = offset
        if lag is not None:
            self._lags[partition] = lag

    def staleness(self, partition: int, now: float | None = None) -> float:
        published = self._published.get(partition)
        if published is None:
            return math.inf
        return max(0.0, (time.time() if now is None else now) - published)

    def denial(self, now: float | None = None) -> str | None:
        """Why a privileged check must be denied now, or ``None`` if it may proceed."""
        if not self._ready:
            return f"revocation view not ready: {self._not_ready_reason}"
        if not self._partitions:
            return "revocation view has no partitions assigned"
        if now is None:
            now = time.time()
        for partition in self._partitions:
            published = self._published.get(partition)
            if published is None:
                return f"partition {partition}: no heartbeat or event seen yet"
            age = now - published
            if age > self.max_staleness:
                return (
                    f"partition {partition}: newest heartbeat/event was published "
                    f"{age:.1f}s ago (max {self.max_staleness:g}s)"
                )
        return None

    def report(self, now: float | None = None) -> FreshnessReport:
        if now is None:
            now = time.time()
        parts = tuple(
            PartitionFreshness(
                partition=p,
                last_published_at=self._published.get(p),
                last_received_at=self._received.get(p),
                staleness=self.staleness(p, now),
                offset=self._offsets.get(p),
                lag=self._lags.get(p),
            )
            for p in self._partitions
        )
        return FreshnessReport(
            ready=self._ready,
            max_staleness=self.max_staleness,
            checked_at=now,
            partitions=parts,
            reason=self.denial(now),
        )
