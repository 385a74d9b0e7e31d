"""The fleet: every instance of every service that reports watermarks, how far it has applied, and
whether it is still there.

A :class:`Fleet` is fed :class:`~schemas.Watermark` records (already verified by the
tracker when service keys are configured) and answers two questions:

* **When did instance I apply the record at (partition, offset)?** At the
  ``applied_at_ns`` of the first watermark of I's current run whose ``next_offset``
  on that partition is beyond the offset: exact to the consumer's poll batch. An
  event at ``next_offset - 1`` is covered, one at ``next_offset`` is not.
* **Who is there?** An instance is *live* while its watermarks keep coming: it sends
  one at least every ``period_s``, and is *silent* once nothing arrived for
  ``silent_after`` periods. A silent instance stays in the fleet, reported as
  silent, until it has been silent for ``forget_after`` seconds; only then is it
  dropped (and logged). A silent instance is never counted as having applied what
  it had not applied before it went quiet.

Runs: an instance (``service``, ``instance``) that restarts sends a new
``started_at_ns``; the newest run is the instance's current one. What an earlier run
applied does not count for the current one: a restarted instance replays, and an
event is in force there again once the new run's watermarks pass it.

Clocks: "last seen" is when the instance sent the watermark (the record's
timestamp, else its ``applied_at_ns``: an idle watermark carries the time of the
last batch it applied, not the time it was sent), capped by the time the tracker
read it, so a record stamped in the future cannot keep an instance live. The record
timestamp is not signed: a replayed watermark can make a dead instance look live,
which only makes it *pending* (the wait goes on), never applied. Across hosts,
presence and latency are as good as clock sync.

Refusals: an instance that dead-lettered the record at (partition, offset) has *not*
applied it, though its watermarks pass that offset. The fleet keeps such refusals
(listed in the watermarks themselves, and named by the dead-letter topic) across
runs: an event refused once stays not in force at that instance (republishing puts
it at a new offset). At most ``max_refusals``
offsets are kept, oldest first out.

Bounded: at most ``max_instances`` instances, ``max_runs`` runs each, and
``max_history`` watermark steps per run and partition. When older steps are
dropped, an event older than every kept step is reported at the oldest kept step's
time (later than it really was, never earlier).

Not thread-safe: the tracker calls it under its own lock.
"""

from __future__ import annotations

import bisect
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas import Watermark

__all__ = ["Fleet", "FleetStatus", "InstanceState", "InstanceStatus"]

log = logging.getLogger(__name__)

InstanceState = Literal["live", "silent"]


def _iso(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


@dataclass
class _Run:
    """One run (one ``started_at_ns``) of one instance."""

    started_at_ns: int
    engine: str
    period_s: float
    ready: bool
    topic_id: str | None
    last_seen_ns: int
    offsets: dict[int, int] = field(default_factory=dict)
    # partition -> [(next_offset, applied_at_ns)], next_offset strictly increasing
    steps: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    trimmed: set[int] = field(default_factory=set)

    def add(self, wm: Watermark, seen_ns: int, max_history: int) -> None:
        self.engine = wm.engine
        self.period_s = wm.period_s
        self.ready = wm.ready
        self.topic_id = wm.topic_id or self.topic_id
        self.last_seen_ns = max(self.last_seen_ns, seen_ns)
        for partition, next_offset in wm.offsets.items():
            steps = self.steps.setdefault(partition, [])
            if steps and next_offset <= steps[-1][0]:
                continue  # not beyond what an earlier watermark already covered
            steps.append((next_offset, wm.applied_at_ns))
            self.offsets[partition] = next_offset
            if len(steps) > 2 * max_history:
                del steps[:max_history]
                self.trimmed.add(partition)

    def covered_at(self, partition: int, offset: int) -> int | None:
        """``applied_at_ns`` of the first kept step beyond ``offset``, or ``None``."""
        steps = self.steps.get(partition)
        if not steps:
            return None
        i = bisect.bisect_right(steps, offset, key=lambda step: step[0])
        return steps[i][1] if i < len(steps) else None


@dataclass
class _Instance:
    service: str
    instance: str
    runs: list[_Run] = field(default_factory=list)  # oldest first; the last is current

    @property
    def current(self) -> _Run:
        return self.runs[-1]


class InstanceStatus(BaseModel):
    """One instance of a service as the tracker sees it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str
    instance: str
    engine: str
    state: InstanceState = Field(description="live: watermarks keep coming; silent: they stopped.")
    ready: bool = Field(description="Caught up with the history that existed at its start.")
    started_at: datetime = Field(description="When the current run of this instance started.")
    runs: int = Field(description="Runs seen (a restart starts a new run).")
    last_seen: datetime
    seen_ago_s: float = Field(description="Seconds since its last watermark.")
    period_s: float = Field(description="It promises a watermark at least this often.")
    applied_through: dict[int, int] = Field(
        description="partition -> last offset applied (-1: none yet)."
    )
    lag: dict[int, int] | None = Field(
        default=None, description="partition -> records behind the end of the events topic."
    )
    total_lag: int | None = Field(default=None, description="Sum of lag over partitions.")


class FleetStatus(BaseModel):
    """Every instance known from watermarks, live or silent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: datetime
    instances: tuple[InstanceStatus, ...]
    refused: dict[str, int] = Field(
        default_factory=dict, description="Receipts-topic records refused, by reason."
    )

    @property
    def services(self) -> list[str]:
        return sorted({i.service for i in self.instances})


class Fleet:
    """Watermarks in, presence and "applied at" out; see the module docstring.

    ``silent_after`` is in periods of the instance; ``forget_after`` in seconds.
    """

    def __init__(
        self,
        *,
        silent_after: float = 3.0,
        forget_after: float = 600.0,
        max_instances: int = 10_000,
        max_runs: int = 4,
        max_history: int = 4096,
        max_refusals: int = 100_000,
    ) -> None:
        if silent_after <= 0 or forget_after <= 0:
            raise ValueError("silent_after and forget_after must be positive")
        self.silent_after = silent_after
        self.forget_after = forget_after
        self.max_instances = max_instances
        self.max_runs = max_runs
        self.max_history = max_history
        self.max_refusals = max_refusals
        self._instances: dict[tuple[str, str], _Instance] = {}
        self._refusals: OrderedDict[tuple[int, int], dict[tuple[str, str], str]] = OrderedDict()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._instances)

    def add(self, wm: Watermark, received_ns: int, sent_ns: int | None = None) -> bool:
        """Take one watermark sent at ``sent_ns`` (its record's timestamp) and read at
        ``received_ns`` (tracker clock); ``False`` if ignored."""
        key = (wm.service, wm.instance)
        inst = self._instances.get(key)
        if inst is None:
            if len(self._instances) >= self.max_instances:
                self.dropped += 1
                return False
            inst = self._instances[key] = _Instance(wm.service, wm.instance)
            log.info("instance %s/%s joined (%s)", wm.service, wm.instance, wm.engine)
        seen_ns = min(max(sent_ns or 0, wm.applied_at_ns), received_ns)
        run = next((r for r in inst.runs if r.started_at_ns == wm.started_at_ns), None)
        if run is None:
            if inst.runs and wm.started_at_ns < inst.runs[0].started_at_ns:
                return False  # older than every run we keep: history, not news
            run = _Run(
                started_at_ns=wm.started_at_ns,
                engine=wm.engine,
                period_s=wm.period_s,
                ready=wm.ready,
                topic_id=wm.topic_id,
                last_seen_ns=seen_ns,
            )
            inst.runs.append(run)
            inst.runs.sort(key=lambda r: r.started_at_ns)
            if len(inst.runs) > 1 and inst.current is run:
                log.info("instance %s/%s restarted (a new run)", wm.service, wm.instance)
            del inst.runs[: max(0, len(inst.runs) - self.max_runs)]
        run.add(wm, seen_ns, self.max_history)
        return True

    def refuse(self, service: str, instance: str, partition: int, offset: int, reason: str) -> None:
        """The instance dead-lettered the record at (partition, offset) for ``reason``."""
        at = self._refusals.setdefault((partition, offset), {})
        at[(service, instance)] = reason
        self._refusals.move_to_end((partition, offset))
        while len(self._refusals) > self.max_refusals:
            self._refusals.popitem(last=False)

    def refusals(self, partition: int, offset: int) -> dict[tuple[str, str], str]:
        """(service, instance) -> reason, for every instance that refused that record."""
        return dict(self._refusals.get((partition, offset), {}))

    # -- presence

    def _state(self, run: _Run, now_ns: int) -> InstanceState:
        silent_ns = self.silent_after * run.period_s * 1e9
        return "silent" if now_ns - run.last_seen_ns > silent_ns else "live"

    def forget_silent(self, now_ns: int) -> list[str]:
        """Drop instances silent for longer than ``forget_after``; their names."""
        gone = [
            key
            for key, inst in self._instances.items()
            if now_ns - inst.current.last_seen_ns > self.forget_after * 1e9
        ]
        for key in gone:
            del self._instances[key]
            log.warning(
                "instance %s/%s forgotten after %g s of silence", key[0], key[1], self.forget_after
            )
        return [f"{s}/{i}" for s, i in gone]

    def members(self, now_ns: int) -> list[tuple[str, str, InstanceState]]:
        """(service, instance, live or silent) for every instance, sorted."""
        return [
            (s, i, self._state(inst.current, now_ns))
            for (s, i), inst in sorted(self._instances.items())
        ]

    def services(self) -> list[str]:
        return sorted({s for s, _ in self._instances})

    # -- applied at

    def applied_at(self, service: str, instance: str, partition: int, offset: int) -> int | None:
        """When the current run of the instance applied (partition, offset), or ``None``."""
        inst = self._instances.get((service, instance))
        return inst.current.covered_at(partition, offset) if inst is not None else None

    def engine(self, service: str, instance: str) -> str:
        inst = self._instances.get((service, instance))
        return inst.current.engine if inst is not None else "unknown"

    def position(self, service: str, instance: str, partition: int | None) -> tuple[int, int]:
        """(last offset applied on ``partition`` or -1, last seen ns) of the current run."""
        inst = self._instances.get((service, instance))
        if inst is None:
            return -1, 0
        run = inst.current
        through = run.offsets.get(partition, 0) - 1 if partition is not None else -1
        return through, run.last_seen_ns

    # -- status

    def status(
        self,
        now_ns: int,
        end_offsets: dict[int, int] | None = None,
        refused: dict[str, int] | None = None,
    ) -> FleetStatus:
        """Every instance with applied-through, lag (given the events topic's end offsets)."""
        out = []
        for (service, instance), inst in sorted(self._instances.items()):
            run = inst.current
            lag: dict[int, int] | None = None
            if end_offsets is not None:
                lag = {p: max(0, end - run.offsets.get(p, 0)) for p, end in end_offsets.items()}
            out.append(
                InstanceStatus(
                    service=service,
                    instance=instance,
                    engine=run.engine,
                    state=self._state(run, now_ns),
                    ready=run.ready,
                    started_at=_iso(run.started_at_ns),
                    runs=len(inst.runs),
                    last_seen=_iso(run.last_seen_ns),
                    seen_ago_s=round(max(0, now_ns - run.last_seen_ns) / 1e9, 3),
                    period_s=run.period_s,
                    applied_through={p: n - 1 for p, n in sorted(run.offsets.items())},
                    lag=lag,
                    total_lag=sum(lag.values()) if lag is not None else None,
                )
            )
        return FleetStatus(at=_iso(now_ns), instances=tuple(out), refused=dict(refused or {}))
