"""What a benchmark run measures: the sweep and every baseline's size (pure data).

Two plans: :func:`full_plan` (``make bench``, under 30 minutes on 2 cores, a
third of it replaying a million retained revocations) and :func:`quick_plan`
(CI's smoke run, under three minutes including the broker start). Both run every
part for real, for every engine, and both measure the target configuration
(8 services at 1,000 events/s): the quick one in a single short step.

Durations are chosen per rate so the whole sweep fits the time budget on a
2-core machine: at high rates with 8 services the consumers cannot keep up (each
event costs every service a signature verification), so the backlog they build
must drain before the next step; short steps keep that bounded.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["PEERS", "BenchPlan", "RateStep", "events_due", "full_plan", "quick_plan"]

PEERS: tuple[str, ...] = ("redis-pubsub", "redis-streams")
"""What a user would build instead (:mod:`bench.peers`), run at the same N and rates."""


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
    engines: tuple[str, ...]
    ns: tuple[int, ...]
    steps: tuple[RateStep, ...]
    headline: tuple[int, int]
    """(N, rate) whose per-service CDF is plotted and which the targets refer to."""
    headline_step: RateStep | None = None
    """When the headline N is not in ``ns``: a group of that N runs only this step."""
    peers: tuple[str, ...] = PEERS
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
    batch_events: int = 100
    """Events per batch record in the batch-record replay (0: not measured)."""
    bootstrap_timeout: float = 720.0
    """Longest wait for one replay; a replay still running then is reported as not ready."""
    profile_records: int = 10_000
    """Records replayed under pyinstrument (a topic of its own unless equal to a size; 0:
    no profile)."""
    poll_periods: tuple[float, ...] = (1.0, 5.0, 30.0)
    poll_window: float = 240.0
    poll_revocations: int = 20
    idp_services: int = 3
    idp_requests: int = 200
    """SCIM deactivations, and as many SSF session-revoked SETs (:mod:`bench.from_idp`)."""
    idp_rate: float = 20.0
    jwt_ttls_min: tuple[float, ...] = (5.0, 15.0, 60.0)
    jwt_tokens: int = 200_000
    seed: int = 20261128
    profile_service: bool = True
    """Run one service of the headline group under pyinstrument."""
    extra: dict[str, Any] = field(default_factory=dict)

    def groups(self) -> list[tuple[int, tuple[RateStep, ...]]]:
        """(N, steps run on the same N services), in order; the headline group last."""
        out = [(n, self.steps) for n in self.ns]
        n, _rate = self.headline
        if n not in self.ns and self.headline_step is not None:
            out.append((n, (self.headline_step,)))
        return out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = [
            {"rate": s.label, "duration_s": s.duration, "max_events": s.max_events}
            for s in self.steps
        ]
        if self.headline_step is not None:
            s = self.headline_step
            data["headline_step"] = {"rate": s.label, "duration_s": s.duration,
                                     "max_events": s.max_events}
        if self.warmup is not None:
            data["warmup"] = {"rate": self.warmup.label, "duration_s": self.warmup.duration,
                              "max_events": self.warmup.max_events}
        return data

    def with_engines(self, engines: tuple[str, ...], known: tuple[str, ...]) -> BenchPlan:
        """This plan on ``engines``, each of which must be in ``known``."""
        unknown = [e for e in engines if e not in known]
        if unknown:
            raise ValueError(f"unknown engine(s) {unknown}: choose from {', '.join(known)}")
        return replace(self, engines=engines)

    def with_peers(self, peers: tuple[str, ...]) -> BenchPlan:
        unknown = [p for p in peers if p not in PEERS]
        if unknown:
            raise ValueError(f"unknown peer(s) {unknown}: choose from {', '.join(PEERS)}")
        return replace(self, peers=peers)


def full_plan(engines: tuple[str, ...] = ("kafka-python", "faust")) -> BenchPlan:
    return BenchPlan(
        name="full",
        engines=engines,
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


def quick_plan(engines: tuple[str, ...] = ("kafka-python", "faust")) -> BenchPlan:
    return BenchPlan(
        name="quick",
        engines=engines,
        ns=(1,),
        steps=(RateStep(100, 1.5, 150), RateStep(1000, 1.5, 1_500)),
        headline=(8, 1000),
        headline_step=RateStep(1000, 1.0, 1_000),
        warmup=RateStep(200, 0.5, 100),
        ready_timeout=90.0,  # a loaded CI machine can take a minute to start 8 services
        drain_timeout=15.0,
        stall_timeout=8.0,
        e2e_records=300,
        idp_requests=20,
        check_iterations=50_000,
        redis_iterations=1000,
        check_state_size=10_000,
        bootstrap_sizes=(10_000,),
        bootstrap_timeout=60.0,
        profile_records=0,
        poll_periods=(1.0, 5.0, 30.0),
        poll_window=20.0,
        poll_revocations=10,
        jwt_tokens=50_000,
        profile_service=False,
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
