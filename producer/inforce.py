"""The tracker's answers: which instances applied an event, which have not, and when in force.

Frozen models (the HTTP API's status schema and the CLI's JSON) and the pure functions
that build them from what :class:`producer.tracker.ReceiptTracker` read: the event's
position, per-event receipts, and the :class:`~producer.fleet.Fleet`.

The rule, in one place (:func:`judge`): a service is missing while fewer than
``min_instances`` of its instances applied the event, or while one of its instances
known from watermarks has not; a silent instance counts as not applied unless the
caller accepts silence (``silent_ok``), and is then still named.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from producer.fleet import Fleet
from producer.positions import EventRef
from schemas import Receipt

__all__ = [
    "EventStatus",
    "InForce",
    "InstanceApplied",
    "InstanceWaiting",
    "ServiceApplied",
    "Verdict",
    "build_status",
    "in_force",
    "judge",
    "not_in_force_message",
]


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


def _iso(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InstanceApplied(_Frozen):
    """One instance that applied the event: when, and how long after it was published."""

    instance: str
    flavor: str = Field(description="The consumer engine.")
    applied_at: datetime
    latency_ms: float = Field(description="applied_at - published_at, in milliseconds.")
    partition: int
    offset: int
    via: Literal["watermark", "receipt"] = Field(
        default="receipt",
        description="watermark: the first watermark beyond the event's offset (exact to the "
        "consumer's batch); receipt: a per-event receipt of an instance not sending watermarks.",
    )
    state: Literal["live", "silent", "unknown"] = Field(
        default="unknown", description="Presence from watermarks; unknown for receipt-only ones."
    )


class InstanceWaiting(_Frozen):
    """An instance that has not applied the event: not yet, silent, or refused it."""

    service: str
    instance: str
    engine: str
    state: Literal["live", "silent", "unknown"] = Field(
        description="Presence from watermarks; unknown for an instance known only from a "
        "dead letter."
    )
    applied_through: int = Field(
        description="Last offset it applied on the event's partition (-1: none)."
    )
    last_seen: datetime | None
    refused: str | None = Field(
        default=None,
        description="It dead-lettered the event's record (the reason): not applied there, "
        "whatever its watermarks say.",
    )


class ServiceApplied(_Frozen):
    """Every instance of one service that applied the event, earliest first."""

    service: str
    instances: tuple[InstanceApplied, ...]

    @computed_field(description="Latency of the first instance to apply it (ms).")  # type: ignore[prop-decorator]
    @property
    def first_ms(self) -> float:
        return self.instances[0].latency_ms

    @computed_field(description="Latency of the last instance that applied it so far (ms).")  # type: ignore[prop-decorator]
    @property
    def last_ms(self) -> float:
        return self.instances[-1].latency_ms

    def nth_ms(self, n: int) -> float | None:
        """Latency of the ``n``-th instance (1-based), or ``None`` if fewer applied it."""
        return self.instances[n - 1].latency_ms if len(self.instances) >= n else None


class EventStatus(_Frozen):
    """What the tracker knows about one event: where it is, who applied it, who has not."""

    event_id: uuid.UUID
    event_type: str | None = Field(description="None while the event is not located.")
    published_at: datetime | None
    partition: int | None = Field(default=None, description="Where the event is (None: unknown).")
    offset: int | None = None
    services: dict[str, ServiceApplied]
    waiting: tuple[InstanceWaiting, ...] = Field(
        default=(), description="Instances known from watermarks that have not applied it."
    )
    source: dict[str, str] | None = Field(
        default=None,
        description="Where the event came from (channel, origin, SET jti as ref, txn, toe, "
        "received_at), when the tracker read the event itself.",
    )

    def missing(
        self, services: Sequence[str], min_instances: int = 1, *, silent_ok: bool = False
    ) -> list[str]:
        """The services in ``services`` with fewer than ``min_instances`` instances that applied
        it, or with a known instance that has not (a silent one only without ``silent_ok``)."""
        behind = {
            w.service
            for w in self.waiting
            if w.refused or not (silent_ok and w.state == "silent")
        }
        return [
            name
            for name in services
            if name not in self.services
            or len(self.services[name].instances) < min_instances
            or name in behind
        ]

    @property
    def silent(self) -> list[str]:
        """``service/instance`` of silent instances that have not applied it."""
        return [f"{w.service}/{w.instance}" for w in self.waiting if w.state == "silent"]

    @property
    def pending(self) -> list[str]:
        """``service/instance`` of live instances that have not applied it yet."""
        return [
            f"{w.service}/{w.instance}"
            for w in self.waiting
            if w.state == "live" and w.refused is None
        ]

    @property
    def refused(self) -> dict[str, str]:
        """``service/instance`` -> reason, for instances that dead-lettered it."""
        return {f"{w.service}/{w.instance}": w.refused for w in self.waiting if w.refused}


class InForce(_Frozen):
    """A revocation applied by every instance asked about.

    ``latency_ms`` is when the last of them got there, measured from the publish time.
    ``silent`` lists instances that were silent and had not applied it: empty unless
    the wait was told to accept them (``silent_ok``).
    """

    event_id: uuid.UUID
    published_at: datetime
    in_force_at: datetime
    latency_ms: float
    services: dict[str, ServiceApplied]
    silent: tuple[str, ...] = ()


# --------------------------------------------------------------------------- building answers


def build_status(
    event_id: uuid.UUID,
    ref: EventRef | None,
    receipts: Iterable[Receipt],
    fleet: Fleet,
    now_ns: int,
) -> EventStatus:
    """Who applied ``event_id`` (at ``ref``) and when, from receipts and watermarks."""
    receipts = list(receipts)
    applied: dict[tuple[str, str], tuple[int, InstanceApplied]] = {}
    for r in receipts:
        applied[(r.service, r.instance)] = (
            r.applied_at_ns,
            InstanceApplied(
                instance=r.instance,
                flavor=r.flavor,
                applied_at=_iso(r.applied_at_ns),
                latency_ms=_ms(r.latency_ns),
                partition=r.partition,
                offset=r.offset,
            ),
        )
    published_ns = ref.published_at_ns if ref is not None else None
    if published_ns is None and receipts:
        published_ns = receipts[0].published_at_ns
    waiting: list[InstanceWaiting] = []
    refusals = fleet.refusals(ref.partition, ref.offset) if ref is not None else {}
    members = fleet.members(now_ns)
    in_fleet = {(s, i) for s, i, _ in members}
    for (service, instance), reason in sorted(refusals.items()):
        applied.pop((service, instance), None)
        if (service, instance) not in in_fleet:
            waiting.append(
                InstanceWaiting(
                    service=service,
                    instance=instance,
                    engine="unknown",
                    state="unknown",
                    applied_through=-1,
                    last_seen=None,
                    refused=reason,
                )
            )
    for service, instance, state in members:
        at = (
            fleet.applied_at(service, instance, ref.partition, ref.offset)
            if ref is not None
            else None
        )
        known = applied.get((service, instance))
        refused = refusals.get((service, instance))
        if at is not None and ref is not None and refused is None:
            if known is None or at < known[0]:
                applied[(service, instance)] = (
                    at,
                    InstanceApplied(
                        instance=instance,
                        flavor=fleet.engine(service, instance),
                        applied_at=_iso(at),
                        latency_ms=_ms(at - (published_ns if published_ns is not None else at)),
                        partition=ref.partition,
                        offset=ref.offset,
                        via="watermark",
                        state=state,
                    ),
                )
        elif known is None:
            through, seen_ns = fleet.position(
                service, instance, ref.partition if ref is not None else None
            )
            waiting.append(
                InstanceWaiting(
                    service=service,
                    instance=instance,
                    engine=fleet.engine(service, instance),
                    state=state,
                    applied_through=through,
                    last_seen=_iso(seen_ns),
                    refused=refused,
                )
            )
    by_service: dict[str, list[tuple[int, InstanceApplied]]] = {}
    for (service, _), item in applied.items():
        by_service.setdefault(service, []).append(item)
    event_type = ref.event_type if ref is not None else None
    return EventStatus(
        event_id=event_id,
        event_type=event_type or (receipts[0].event_type if receipts else None),
        published_at=_iso(published_ns) if published_ns is not None else None,
        partition=ref.partition if ref is not None else None,
        offset=ref.offset if ref is not None else None,
        services={
            name: ServiceApplied(
                service=name, instances=tuple(a for _, a in sorted(items, key=lambda x: x[0]))
            )
            for name, items in sorted(by_service.items())
        },
        waiting=tuple(waiting),
        source=ref.source if ref is not None else None,
    )


@dataclass(frozen=True)
class Verdict:
    """Whether a status answers "in force" for ``wanted``, and who is not there yet."""

    missing: list[str]
    silent: list[str]
    pending: list[str]

    @property
    def done(self) -> bool:
        return not self.missing


def judge(
    status: EventStatus, wanted: Sequence[str], *, min_instances: int, silent_ok: bool
) -> Verdict:
    """The rule of the module docstring; ``wanted`` empty (no fleet) is never in force."""
    scope = set(wanted)
    silent = [s for s in status.silent if s.split("/", 1)[0] in scope]
    pending = [s for s in status.pending if s.split("/", 1)[0] in scope]
    missing = status.missing(wanted, min_instances, silent_ok=silent_ok) if wanted else ["*"]
    return Verdict(missing=missing, silent=silent, pending=pending)


def in_force(
    status: EventStatus, wanted: Sequence[str], min_instances: int, silent: Sequence[str]
) -> InForce:
    """The answer once :func:`judge` said done: when the last wanted instance got there."""
    chosen = {name: status.services[name] for name in wanted}
    if status.published_at is None:  # every wanted service applied a located event
        raise ValueError(f"revocation {status.event_id} has no publish time")
    last = [
        max(
            [s.instances[min_instances - 1]] + [i for i in s.instances if i.via == "watermark"],
            key=lambda i: i.applied_at,
        )
        for s in chosen.values()
    ]
    at = max(i.applied_at for i in last)
    latency = max(i.latency_ms for i in last)
    return InForce(
        event_id=status.event_id,
        published_at=status.published_at,
        in_force_at=at,
        latency_ms=latency,
        services=chosen,
        silent=tuple(silent),
    )


def not_in_force_message(
    status: EventStatus, wanted: Sequence[str], verdict: Verdict, timeout: float
) -> str:
    """One line: what is missing, who is silent, who is still applying, and why unknown."""
    if not wanted:
        what = "not in force: no service instance has announced itself with a watermark"
    else:
        applied = ", ".join(sorted(status.services)) or "no service"
        what = f"not in force in {', '.join(verdict.missing)} (applied by {applied})"
    parts = [f"revocation {status.event_id} is {what} after {timeout:g} s"]
    if verdict.silent:
        parts.append(f"silent: {', '.join(verdict.silent)}")
    if verdict.pending:
        parts.append(f"still applying: {', '.join(verdict.pending)}")
    refused = {k: v for k, v in status.refused.items() if k.split("/", 1)[0] in wanted}
    if refused:
        parts.append("refused by " + ", ".join(f"{k} ({v})" for k, v in refused.items()))
    if status.partition is None:
        parts.append("its position in the events topic is unknown")
    return "; ".join(parts)
