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

The guard also watches the consumer itself, so a stuck consumer never looks
healthy: :meth:`FreshnessGuard.problem` names a loop that stopped turning, polls
that keep failing, or a partition whose position does not advance while the
broker holds more records, once any of these lasts longer than ``stall_after``.
Readiness, ``/metrics`` and privileged checks all read it.

Publish times from the future are not trusted: a record is counted as published
no later than it was received (``min(published, received)``), and the forward
skew is reported (``clock_skew``). A producer clock one hour ahead therefore
cannot keep a silent partition looking fresh for an hour.

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
    problem: str | None = None
    """What is wrong with the consumer itself (stalled, failing polls), if anything."""
    clock_skew: float = 0.0
    """Largest amount (seconds) by which a publish time was ahead of its receive time."""

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

    def __init__(self, max_staleness: float = 5.0, stall_after: float | None = None) -> None:
        if not max_staleness > 0:
            raise ValueError("max_staleness must be positive (seconds)")
        self.max_staleness = float(max_staleness)
        self.stall_after = float(stall_after) if stall_after else max(self.max_staleness, 3.0)
        """Seconds a stall (loop, polls, a partition's position) may last before it counts."""
        self._skew = 0.0
        self._beat: float | None = None
        self._failing_since: float | None = None
        self._failure = ""
        self._progress_at: dict[int, float] = {}
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
        """A record published at ``published_at`` was applied from ``partition``.

        A publish time ahead of the receive time is clamped to the receive time.
        """
        received = time.time() if received_at is None else received_at
        if published_at > received:
            self._skew = max(self._skew, published_at - received)
            published_at = received
        if published_at > self._published.get(partition, -math.inf):
            self._published[partition] = published_at
            self._received[partition] = received

    def set_position(self, partition: int, offset: int, lag: int | None = None) -> None:
        """The consumer's position on ``partition`` and its lag behind the broker's end.

        ``lag`` must come from a fresh end offset (a ListOffsets answer), not from the
        last fetch: a consumer that stopped fetching would otherwise read lag 0.
        """
        previous = self._offsets.get(partition)
        self._offsets[partition] = offset
        if lag is not None:
            self._lags[partition] = lag
        if previous is None or offset > previous or not self._lags.get(partition):
            self._progress_at[partition] = time.monotonic()

    # ------------------------------------------------------------ the consumer itself

    def beat(self) -> None:
        """The consumer loop turned once (called every iteration)."""
        self._beat = time.monotonic()

    def poll_failed(self, error: str) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        self._failure = error

    def poll_ok(self) -> None:
        self._failing_since = None

    @property
    def clock_skew(self) -> float:
        return self._skew

    def problem(self) -> str | None:
        """What is wrong with the consumer itself, or ``None``: see the module docstring."""
        mono = time.monotonic()
        limit = self.stall_after
        if self._beat is not None and mono - self._beat > limit:
            return f"consumer loop has not turned for {mono - self._beat:.1f}s"
        if self._failing_since is not None and mono - self._failing_since > limit:
            return (
                f"polls have failed for {mono - self._failing_since:.1f}s: {self._failure}"
            )
        for partition, lag in self._lags.items():
            since = self._progress_at.get(partition)
            if lag and since is not None and mono - since > limit:
                return (
                    f"partition {partition}: position {self._offsets.get(partition)} has not "
                    f"advanced for {mono - since:.1f}s while the broker holds {lag} more records"
                )
        return None

    @property
    def healthy(self) -> bool:
        """Ready and not stuck: what readiness probes and the ready gauge report."""
        return self._ready and self.problem() is None

    def staleness(self, partition: int, now: float | None = None) -> float:
        published = self._published.get(partition)
        if published is None:
            return math.inf
        return max(0.0, (time.time() if now is None else now) - published)

    def denial(self, now: float | None = None) -> str | None:
        """Why a privileged check must be denied now, or ``None`` if it may proceed."""
        if not self._ready:
            return f"revocation view not ready: {self._not_ready_reason}"
        problem = self.problem()
        if problem is not None:
            return f"revocation consumer stuck: {problem}"
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
            problem=self.problem(),
            clock_skew=self._skew,
        )
