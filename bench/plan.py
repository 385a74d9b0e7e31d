"""What a benchmark run measures: the sweep and every baseline's size (pure data).

Two plans: :func:`full_plan` (``make bench``, about 20 minutes on 2 cores, half
of it replaying a million retained revocations) and
:func:`quick_plan` (CI's smoke run, under two minutes including the broker start).
Both run every part for real; the quick one only measures less.

Durations are chosen per rate so the whole sweep fits the time budget on a
2-core machine: at high rates with 8 services the consumers cannot keep up (each
event costs every service a signature verification), so the backlog they build
must drain before the next step; short steps keep that bounded.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["FLAVORS", "BenchPlan", "RateStep", "events_due", "full_plan", "quick_plan"]

FLAVORS: tuple[str, ...] = ("kafka-python", "faust")


@dataclass(frozen=True)
class RateStep:
    """Publish at ``rate`` events/s (``None``: as fast as the publisher goes) for
    ``duration`` s, never more than ``max_events`` events."""

    rate: int | None
    duration: float
    max_events: int

    @property
    def label(self) -> str:
        return "max" if self.rate is None else str(self.rate)

    @property
    def planned_events(self) -> int:
        if self.rate is None:
            return self.max_events
        return min(self.max_events, math.ceil(self.rate * self.duration))


@dataclass(frozen=True)
class BenchPlan:
    name: str
    flavors: tuple[str, ...]
    ns: tuple[int, ...]
    steps: tuple[RateStep, ...]
    headline: tuple[int, int]
    """(N, rate) whose per-service CDF is plotted and which the targets refer to."""
    partitions: int = 6
    ready_timeout: float = 90.0
    drain_timeout: float = 60.0
    """Longest wait, after the last publish of a step, for every receipt."""
    stall_timeout: float = 20.0
    """Give up draining earlier when no new receipt arrived for this long."""
    warmup: RateStep | None = RateStep(200, 1.0, 200)
    """Published (and drained) but not recorded after a group starts: warms the broker's
    JIT and the services' code paths so the first measured step is not a cold start."""
    max_batch: int = 200
    """Events per ``publish_many`` call when catching up or at max rate."""
    tick: float = 0.002
    """Pacing granularity (s): events due are sent at most this late."""
    e2e_records: int = 2000
    e2e_record_size: int = 512
    check_iterations: int = 200_000
    redis_iterations: int = 5000
    check_state_size: int = 100_000
    bootstrap_sizes: tuple[int, ...] = (100_000, 1_000_000)
    bootstrap_timeout: float = 720.0
    """Longest wait for one replay; a replay still running then is reported as not ready."""
    profile_records: int = 10_000
    """Records replayed under pyinstrument (a topic of its own unless equal to a size)."""
    poll_periods: tuple[float, ...] = (1.0, 5.0, 30.0)
    poll_window: float = 240.0
    poll_revocations: int = 20
    jwt_ttls_min: tuple[float, ...] = (5.0, 15.0, 60.0)
    jwt_tokens: int = 200_000
    seed: int = 20261128
    profile_service: bool = True
    """Run one service of the headline group under pyinstrument."""
    time_budget: float | None = None
    """Quick mode: skip what is optional (the faust flavor last) once over budget."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = [
            {"rate": s.label, "duration_s": s.duration, "max_events": s.max_events}
            for s in self.steps
        ]
        if self.warmup is not None:
            data["warmup"] = {"rate": self.warmup.label, "duration_s": self.warmup.duration,
                              "max_events": self.warmup.max_events}
        return data

    def with_flavors(self, flavors: tuple[str, ...]) -> BenchPlan:
        unknown = [f for f in flavors if f not in FLAVORS]
        if unknown:
            raise ValueError(f"unknown flavor(s) {unknown}: choose from {', '.join(FLAVORS)}")
        return replace(self, flavors=flavors)


def full_plan() -> BenchPlan:
    return BenchPlan(
        name="full",
        flavors=FLAVORS,
        ns=(1, 2, 4, 8),
        steps=(
            RateStep(100, 5.0, 500),
            RateStep(1000, 5.0, 5_000),
            RateStep(5000, 2.0, 10_000),
            RateStep(None, 1.0, 10_000),
        ),
        headline=(8, 1000),
        e2e_records=2000,
        profile_records=10_000,
    )


def quick_plan() -> BenchPlan:
    return BenchPlan(
        name="quick",
        flavors=FLAVORS,
        ns=(1, 2),
        steps=(RateStep(100, 3.0, 300), RateStep(1000, 3.0, 3_000)),
        headline=(2, 1000),
        ready_timeout=45.0,
        drain_timeout=15.0,
        stall_timeout=8.0,
        e2e_records=500,
        check_iterations=50_000,
        redis_iterations=1000,
        check_state_size=10_000,
        bootstrap_sizes=(10_000, 20_000),
        bootstrap_timeout=60.0,
        profile_records=10_000,
        poll_periods=(1.0, 5.0, 30.0),
        poll_window=20.0,
        poll_revocations=10,
        jwt_tokens=50_000,
        profile_service=False,
        time_budget=110.0,
    )


def events_due(elapsed: float, rate: float, total: int) -> int:
    """How many events a paced publisher should have sent ``elapsed`` s after start.

    Event ``i`` (0-based) is due at ``i / rate``; so at t=0 one event is due, and
    the count never exceeds ``total``.
    """
    if elapsed < 0:
        return 0
    if rate <= 0:
        raise ValueError("rate must be positive")
    return min(total, math.floor(elapsed * rate) + 1)
