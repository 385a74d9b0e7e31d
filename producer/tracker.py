"""Read receipts and answer: is this revocation in force in these services yet, and since when?

A :class:`ReceiptTracker` reads the receipts topic in a background thread with a
manual assignment of *every* partition (no consumer group: a group would split the
receipts between trackers), starting from a chosen point, and indexes receipts by
event id.

Guarantees:

* A receipt written after :meth:`ReceiptTracker.start` returned is seen (start
  positions are resolved to explicit offsets before ``start`` returns). A tracker
  started before an event is published therefore never misses its receipts.
* :meth:`ReceiptTracker.wait_in_force` returns an :class:`InForce` only when every
  named service has at least ``min_instances`` instances that applied the event;
  otherwise it raises :class:`~producer.exceptions.NotInForceError` naming the
  missing services, within ``timeout`` seconds. (Raising was chosen over a result
  with a ``.missing`` field so that forgetting to check cannot read as success.)
* Latencies are ``applied_at_ns - published_at_ns``: the consumer's clock minus
  the publisher's. Across hosts they are only as good as clock sync.

Not guaranteed: that a service has *all* its instances in the answer. The tracker
knows only instances that reported; ask for ``min_instances`` when you know how
many there are. Memory is bounded: at most ``max_events`` event ids are indexed,
oldest first out.

    with ReceiptTracker(bootstrap, topics) as tracker:
        published = publisher.publish(event)
        tracker.wait_in_force(published.event_id, ["api", "billing"], timeout=5)
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field

from producer.exceptions import NotInForceError
from producer.topics import admin_client, require_reachable, topic_partitions
from schemas import BrokerUnavailableError, ConfigError, Receipt, TopicNames

__all__ = ["EventStatus", "InForce", "InstanceApplied", "ReceiptTracker", "ServiceApplied"]

log = logging.getLogger(__name__)

StartAt = Literal["beginning", "end"] | datetime


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


def _iso(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InstanceApplied(_Frozen):
    """One instance's receipt: when it applied the event, and how long after publishing."""

    instance: str
    flavor: str
    applied_at: datetime
    latency_ms: float = Field(description="applied_at - published_at, in milliseconds.")
    partition: int
    offset: int


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
    """What the tracker knows about one event: which services applied it, and when."""

    event_id: uuid.UUID
    event_type: str | None = Field(description="From the receipts; None before the first one.")
    published_at: datetime | None
    services: dict[str, ServiceApplied]

    def missing(self, services: Sequence[str], min_instances: int = 1) -> list[str]:
        """The services in ``services`` with fewer than ``min_instances`` receipts."""
        return [
            name
            for name in services
            if name not in self.services or len(self.services[name].instances) < min_instances
        ]


class InForce(_Frozen):
    """A revocation applied by every service asked about.

    ``latency_ms`` is when the last of them got there (its ``min_instances``-th
    instance), measured from the publish time.
    """

    event_id: uuid.UUID
    published_at: datetime
    in_force_at: datetime
    latency_ms: float
    services: dict[str, ServiceApplied]


def _parse_services(services: Sequence[str]) -> list[str]:
    names = [s.strip() for s in services if s.strip()]
    if not names:
        raise ConfigError("name at least one service to wait for")
    return list(dict.fromkeys(names))


class ReceiptTracker:
    """Index the receipts topic by event id; see the module docstring.

    ``start`` is ``"end"`` (only receipts written from now on, the default),
    ``"beginning"`` (everything retained) or an aware ``datetime``. ``only``
    restricts the index to some event ids (the ``status`` command reads the whole
    topic for one event).
    """

    def __init__(
        self,
        bootstrap: str,
        topics: TopicNames,
        *,
        start: StartAt = "end",
        only: Collection[uuid.UUID] | None = None,
        max_events: int = 100_000,
        connect_timeout: float = 10.0,
        client_id: str = "revocast-tracker",
        kafka_options: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(start, datetime) and start.tzinfo is None:
            raise ConfigError("tracker start time must be timezone-aware")
        self.bootstrap = bootstrap
        self.topics = topics
        self.start_at: StartAt = start
        self.max_events = max_events
        self.connect_timeout = connect_timeout
        self.client_id = client_id
        self.kafka_options = dict(kafka_options or {})  # security (KafkaSecurity) and the like
        self._only = frozenset(only) if only is not None else None
        self._cond = threading.Condition()
        self._index: OrderedDict[uuid.UUID, dict[tuple[str, str], Receipt]] = OrderedDict()
        self._positions: dict[int, int] = {}
        self._targets: dict[int, int] = {}
        self._consumer: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.invalid_receipts = 0
        self.last_error: str | None = None

    # -- lifecycle

    def start(self) -> Self:
        """Connect, assign every receipts partition, resolve start offsets, start reading."""
        if self._thread is not None:
            return self
        with admin_client(
            self.bootstrap,
            timeout=self.connect_timeout,
            client_id=f"{self.client_id}-admin",
            kafka_options=self.kafka_options,
        ) as admin:
            partitions = topic_partitions(admin, self.topics.receipts)
        if partitions is None:
            raise ConfigError(
                f"receipts topic {self.topics.receipts!r} does not exist on Kafka at "
                f"{self.bootstrap}: create it with `revocast topics ensure`"
            )
        ms = max(100, int(self.connect_timeout * 1000))
        require_reachable(self.bootstrap, self.connect_timeout)
        try:
            consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id=self.client_id,
                group_id=None,
                enable_auto_commit=False,
                allow_auto_create_topics=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=100,
                request_timeout_ms=max(ms, 1000),
                bootstrap_timeout_ms=ms,
                reconnect_backoff_max_ms=1000,
                max_poll_records=5000,
                **self.kafka_options,
            )
        except KafkaError as exc:
            raise BrokerUnavailableError(
                f"Kafka at {self.bootstrap} did not answer within {self.connect_timeout:g} s "
                f"({type(exc).__name__})"
            ) from None
        try:
            tps = [TopicPartition(self.topics.receipts, p) for p in partitions]
            consumer.assign(tps)
            ends = consumer.end_offsets(tps, timeout_ms=ms)
            if isinstance(self.start_at, datetime):
                stamp = int(self.start_at.timestamp() * 1000)
                found = consumer.offsets_for_times(dict.fromkeys(tps, stamp), timeout_ms=ms)
                starts = {
                    tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps
                }
            elif self.start_at == "beginning":
                starts = consumer.beginning_offsets(tps, timeout_ms=ms)
            else:
                starts = ends
            for tp in tps:
                consumer.seek(tp, starts[tp])
        except KafkaError as exc:
            consumer.close()
            raise BrokerUnavailableError(
                f"cannot read offsets of {self.topics.receipts} from Kafka at {self.bootstrap}: "
                f"{exc}"
            ) from None
        self._consumer = consumer
        self._targets = {tp.partition: int(ends[tp]) for tp in tps}
        self._positions = {tp.partition: int(starts[tp]) for tp in tps}
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="revocast-tracker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading and close the consumer (bounded by ``timeout``)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close(autocommit=False, timeout_ms=int(timeout * 1000))
            except KafkaError as exc:  # closing must not fail a shutdown
                log.debug("closing receipts consumer: %s", exc)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the reading thread

    def _run(self) -> None:
        consumer = self._consumer
        backoff = 0.1
        while not self._stop.is_set():
            try:
                batches = consumer.poll(timeout_ms=100)
            except KafkaError as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("reading receipts failed (retrying in %.1f s): %s", backoff, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except Exception:  # never let the thread die silently; keep serving status
                log.exception("unexpected error reading receipts; retrying")
                self._stop.wait(1.0)
                continue
            backoff = 0.1
            self.last_error = None
            if not batches:
                continue
            with self._cond:
                for tp, records in batches.items():
                    for record in records:
                        self._add(record.value)
                        self._positions[tp.partition] = record.offset + 1
                self._cond.notify_all()

    def _add(self, value: bytes | None) -> None:
        try:
            receipt = Receipt.from_bytes(value or b"")
        except ValidationError:
            self.invalid_receipts += 1
            log.warning("skipping an invalid receipt (%d so far)", self.invalid_receipts)
            return
        self._record(receipt)

    def record(self, receipt: Receipt) -> None:
        """Index one receipt as if read from the topic (for tests and replays)."""
        with self._cond:
            self._record(receipt)
            self._cond.notify_all()

    def _record(self, receipt: Receipt) -> None:
        if self._only is not None and receipt.event_id not in self._only:
            return
        per_event = self._index.get(receipt.event_id)
        if per_event is None:
            per_event = self._index[receipt.event_id] = {}
            while len(self._index) > self.max_events:
                self._index.popitem(last=False)
        key = (receipt.service, receipt.instance)
        known = per_event.get(key)
        # A replaying consumer may report again: the first application is the one that counts.
        if known is None or receipt.applied_at_ns < known.applied_at_ns:
            per_event[key] = receipt

    # -- catching up

    def caught_up(self) -> bool:
        """Whether everything that was in the topic at :meth:`start` has been read."""
        with self._cond:
            return all(self._positions.get(p, 0) >= end for p, end in self._targets.items())

    def catch_up(self, timeout: float) -> None:
        """Wait until everything that was in the topic at start has been read."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not all(self._positions.get(p, 0) >= e for p, e in self._targets.items()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BrokerUnavailableError(
                        f"could not read {self.topics.receipts} up to its end within {timeout:g} s"
                        + (f" ({self.last_error})" if self.last_error else "")
                    )
                self._cond.wait(min(remaining, 0.2))

    # -- answers

    def _status(self, event_id: uuid.UUID) -> EventStatus:
        per_event = self._index.get(event_id, {})
        by_service: dict[str, list[Receipt]] = {}
        for receipt in per_event.values():
            by_service.setdefault(receipt.service, []).append(receipt)
        services = {
            name: ServiceApplied(
                service=name,
                instances=tuple(
                    InstanceApplied(
                        instance=r.instance,
                        flavor=r.flavor,
                        applied_at=_iso(r.applied_at_ns),
                        latency_ms=_ms(r.latency_ns),
                        partition=r.partition,
                        offset=r.offset,
                    )
                    for r in sorted(receipts, key=lambda r: r.applied_at_ns)
                ),
            )
            for name, receipts in sorted(by_service.items())
        }
        first = next(iter(per_event.values()), None)
        return EventStatus(
            event_id=event_id,
            event_type=first.event_type if first else None,
            published_at=_iso(first.published_at_ns) if first else None,
            services=services,
        )

    def status(self, event_id: uuid.UUID) -> EventStatus:
        """Which services and instances applied ``event_id`` so far, and when."""
        with self._cond:
            return self._status(event_id)

    def wait_in_force(
        self,
        event_id: uuid.UUID,
        services: Sequence[str],
        *,
        timeout: float,
        min_instances: int = 1,
    ) -> InForce:
        """Block until each of ``services`` has ``min_instances`` receipts for ``event_id``.

        Returns the :class:`InForce` with per-service latencies, or raises
        :class:`~producer.exceptions.NotInForceError` naming the services still
        missing after ``timeout`` seconds.
        """
        if self._thread is None:
            raise ConfigError("the receipt tracker is not started: call start() first")
        if min_instances < 1:
            raise ConfigError(f"min_instances must be >= 1, got {min_instances}")
        names = _parse_services(services)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                status = self._status(event_id)
                missing = status.missing(names, min_instances)
                if not missing:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    applied = ", ".join(sorted(status.services)) or "no service"
                    raise NotInForceError(
                        f"revocation {event_id} is not in force in {', '.join(missing)} after "
                        f"{timeout:g} s (applied by {applied})"
                        + (f"; receipts unreadable: {self.last_error}" if self.last_error else ""),
                        event_id=event_id,
                        missing=missing,
                        status=status,
                    )
                self._cond.wait(remaining)
        chosen = {name: status.services[name] for name in names}
        published_at = status.published_at
        if published_at is None:  # unreachable: every named service has a receipt
            raise NotInForceError(
                f"revocation {event_id} has no receipts",
                event_id=event_id,
                missing=names,
                status=status,
            )
        latency = max(s.nth_ms(min_instances) or 0.0 for s in chosen.values())
        return InForce(
            event_id=event_id,
            published_at=published_at,
            in_force_at=max(s.instances[min_instances - 1].applied_at for s in chosen.values()),
            latency_ms=latency,
            services=chosen,
        )
