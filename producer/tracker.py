"""Read watermarks (and receipts) and answer: is this revocation in force everywhere, since when?

A :class:`ReceiptTracker` reads the receipts topic in a background thread with a
manual assignment of *every* partition (no consumer group: a group would split the
records between trackers). The topic carries two kinds of record:

* **Watermarks** (:class:`~schemas.Watermark`): an instance's word that it applied
  every record before ``next_offset`` of each events partition, sent after each poll
  batch and at least every ``period_s`` while idle. They feed the :class:`Fleet`
  (:mod:`producer.fleet`): who is live, who is silent, how far each has applied.
* **Receipts** (:class:`~schemas.Receipt`), one per applied event, from instances
  that do not send watermarks yet (a rolling upgrade); indexed by event id.

An event is in force at an instance at the ``applied_at_ns`` of the first watermark
of that instance whose offset on the event's partition is beyond the event's
(exact to the consumer's batch), or at its receipt's time. The event's position
comes from the publish acknowledgement (a publisher with ``tracker=`` hands over
every :class:`~producer.publisher.Published`), from a receipt, or from a bounded
scan of the events topic (:mod:`producer.positions`).

Guarantees:

* **Forgery needs a service key.** Given ``service_keys`` (a JWKS of the services'
  public keys), only watermarks that verify count; unsigned ones, receipts (never
  signed), wrongly signed ones are refused, counted by reason in :attr:`refused`
  and logged. Without keys, whoever can write the receipts topic can claim "in
  force": configure keys (and ACLs) in production.
* **A refusal is not an application.** An instance that dead-lettered the event's
  record has not applied it, whatever offsets its watermarks pass, and is named as
  refusing it: each watermark lists the offsets it passes that its instance refused
  (``refused``, in the same signed record, so no reading order can count one as
  applied), and the dead-letter topic, read too, names the reason
  (:mod:`producer.intake`).
* **Nothing is silently skipped.** ``wait_in_force(event)`` with no service list
  waits for every instance of every service in the fleet; one that has gone silent
  and had not applied the event keeps it *not* in force (it is named in
  :class:`~producer.exceptions.NotInForceError`) unless ``silent_ok`` is given, and
  then it is named in :attr:`InForce.silent`. An instance silent for
  ``forget_after`` seconds is dropped from the fleet (logged).
* A record written after :meth:`ReceiptTracker.start` returned is seen (start
  positions are resolved to explicit offsets before ``start`` returns). To know the
  fleet at once, watermarks from the last ``fleet_window`` seconds before the start
  are read too (receipts from before the start point are not indexed). Not
  guaranteed: an instance that fell silent before that window is unknown to this
  tracker, so it cannot be named; keep the window longer than the services' periods
  (``revocast status`` reads ``REVOCAST_FLEET_FORGET_AFTER`` back).
* Latencies are ``applied_at_ns - published_at_ns``: the consumer's clock minus
  the publisher's. Across hosts they are only as good as clock sync.

Memory is bounded: at most ``max_events`` events are indexed (oldest first out), and
the fleet's own bounds (:class:`Fleet`).

    with ReceiptTracker(bootstrap, topics, service_keys=KeySet.load(jwks)) as tracker:
        published = publisher.publish(event)
        tracker.wait_in_force(published, timeout=5)            # every live instance
        tracker.wait_in_force(published, ["api", "billing"], timeout=5)
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from producer.exceptions import NotInForceError
from producer.fleet import Fleet, FleetStatus
from producer.inforce import (
    EventStatus,
    InForce,
    InstanceApplied,
    InstanceWaiting,
    ServiceApplied,
    Verdict,
    build_status,
    in_force,
    judge,
    not_in_force_message,
)
from producer.intake import RecordIntake, normal_topic_id
from producer.positions import EventRef, EventsReader
from producer.topics import admin_client, require_reachable, topic_partitions
from schemas import (
    BrokerUnavailableError,
    ConfigError,
    KeySet,
    Receipt,
    TopicNames,
)

if TYPE_CHECKING:
    from producer.publisher import Published
    from producer.settings import ProducerSettings

__all__ = [
    "EventStatus",
    "FleetStatus",
    "InForce",
    "InstanceApplied",
    "InstanceWaiting",
    "ReceiptTracker",
    "ServiceApplied",
]

log = logging.getLogger(__name__)

StartAt = Literal["beginning", "end"] | datetime
_MAX_RECORD = 1_048_576


def _parse_services(services: Sequence[str]) -> list[str]:
    names = [s.strip() for s in services if s.strip()]
    if not names:
        raise ConfigError("name at least one service to wait for (or none: every live instance)")
    return list(dict.fromkeys(names))


class ReceiptTracker:
    """Index watermarks and receipts; see the module docstring.

    ``start`` is ``"end"`` (only what is written from now on, the default),
    ``"beginning"`` (everything retained) or an aware ``datetime``. ``only``
    restricts the receipts index to some event ids (the ``status`` command reads the
    whole topic for one event). ``service_keys`` turns on watermark verification.
    ``silent_after`` (periods) and ``forget_after`` (seconds) shape presence.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: TopicNames,
        *,
        start: StartAt = "end",
        only: Collection[uuid.UUID] | None = None,
        service_keys: KeySet | None = None,
        fleet_window: float = 30.0,
        silent_after: float = 3.0,
        forget_after: float = 600.0,
        locate_lookback: timedelta = timedelta(hours=1),
        max_events: int = 100_000,
        connect_timeout: float = 10.0,
        client_id: str = "revocast-tracker",
        kafka_options: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(start, datetime) and start.tzinfo is None:
            raise ConfigError("tracker start time must be timezone-aware")
        if service_keys is not None and len(service_keys) == 0:
            raise ConfigError("the service JWKS has no keys: every watermark would be refused")
        self.bootstrap = bootstrap
        self.topics = topics
        self.start_at: StartAt = start
        self.service_keys = service_keys
        self.fleet_window = fleet_window
        self.locate_lookback = locate_lookback
        self.max_events = max_events
        self.connect_timeout = connect_timeout
        self.client_id = client_id
        self.kafka_options = dict(kafka_options or {})  # security (KafkaSecurity) and the like
        self.fleet = Fleet(silent_after=silent_after, forget_after=forget_after)
        self.events = EventsReader(
            bootstrap,
            topics,
            timeout=connect_timeout,
            client_id=f"{client_id}-events",
            kafka_options=self.kafka_options,
        )
        self._only = frozenset(only) if only is not None else None
        self._cond = threading.Condition()
        self._index: OrderedDict[uuid.UUID, dict[tuple[str, str], Receipt]] = OrderedDict()
        self._refs: OrderedDict[uuid.UUID, EventRef] = OrderedDict()
        self.intake = RecordIntake(topics, self.fleet, self._record, service_keys=service_keys)
        self._positions: dict[TopicPartition, int] = {}
        self._index_from: dict[TopicPartition, int] = {}
        self._targets: dict[TopicPartition, int] = {}
        self._consumer: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.last_error: str | None = None

    @classmethod
    def from_settings(
        cls,
        settings: ProducerSettings,
        *,
        start: StartAt = "end",
        only: Collection[uuid.UUID] | None = None,
        client_id: str | None = None,
    ) -> ReceiptTracker:
        """A tracker configured by ``settings``: service keys, fleet, Kafka security."""
        return cls(
            settings.bootstrap_servers,
            settings.topics,
            start=start,
            only=only,
            service_keys=settings.service_keys(),
            forget_after=settings.fleet_forget_after.total_seconds(),
            locate_lookback=settings.status_lookback,
            connect_timeout=settings.connect_timeout,
            client_id=client_id or f"{settings.client_id}-tracker",
            kafka_options=settings.kafka_security.to_kafka_python(),
        )

    # -- lifecycle

    def start(self) -> Self:
        """Connect, assign every receipts and dead-letter partition, resolve start offsets,
        start reading."""
        if self._thread is not None:
            return self
        with admin_client(
            self.bootstrap,
            timeout=self.connect_timeout,
            client_id=f"{self.client_id}-admin",
            kafka_options=self.kafka_options,
        ) as admin:
            partitions = topic_partitions(admin, self.topics.receipts)
            letters = topic_partitions(admin, self.topics.dead_letter) or []
            try:
                described = admin.describe_topics([self.topics.events])
                self.intake.events_topic_id = normal_topic_id(described[0].get("topic_id"))
            except (KafkaError, IndexError, AttributeError) as exc:
                log.debug("no topic id for %s: %s", self.topics.events, exc)
        if not letters:
            log.warning(
                "no dead-letter topic %s: refusals cannot be seen (revocast topics ensure)",
                self.topics.dead_letter,
            )
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
            tps += [TopicPartition(self.topics.dead_letter, p) for p in letters]
            consumer.assign(tps)
            ends = consumer.end_offsets(tps, timeout_ms=ms)
            starts = self._offsets_at(consumer, tps, self.start_at, ends, ms)
            # Watermarks from just before the start say who is there right away.
            window = datetime.now(UTC) - timedelta(seconds=self.fleet_window)
            early = self._offsets_at(consumer, tps, window, ends, ms)
            for tp in tps:
                consumer.seek(tp, min(starts[tp], early[tp]))
        except KafkaError as exc:
            consumer.close()
            raise BrokerUnavailableError(
                f"cannot read offsets of {self.topics.receipts} from Kafka at {self.bootstrap}: "
                f"{exc}"
            ) from None
        self._consumer = consumer
        self._targets = {tp: int(ends[tp]) for tp in tps}
        self._index_from = {tp: int(starts[tp]) for tp in tps}
        self._positions = {tp: int(min(starts[tp], early[tp])) for tp in tps}
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="revocast-tracker", daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _offsets_at(
        consumer: Any,
        tps: list[TopicPartition],
        at: StartAt,
        ends: dict[TopicPartition, int],
        ms: int,
    ) -> dict[TopicPartition, int]:
        if isinstance(at, datetime):
            stamp = max(0, int(at.timestamp() * 1000))
            found = consumer.offsets_for_times(dict.fromkeys(tps, stamp), timeout_ms=ms)
            return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps}
        if at == "beginning":
            return dict(consumer.beginning_offsets(tps, timeout_ms=ms))
        return dict(ends)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading and close the consumers (bounded by ``timeout``)."""
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
        self.events.close()

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
            now = time.time_ns()
            with self._cond:
                for tp, records in batches.items():
                    letters = tp.topic == self.topics.dead_letter
                    for record in records:
                        if letters:
                            self.intake.dead_letter(record.headers)
                        else:
                            fleet_only = record.offset < self._index_from.get(tp, 0)
                            sent = record.timestamp * 1_000_000 if record.timestamp > 0 else None
                            self.intake.receipts_record(
                                record.value, now, sent, fleet_only=fleet_only
                            )
                        self._positions[tp] = record.offset + 1
                self.fleet.forget_silent(now)
                self._cond.notify_all()

    @property
    def refused(self) -> dict[str, int]:
        """Receipts-topic records refused so far, by reason (see :mod:`producer.intake`)."""
        return dict(self.intake.refused)

    @property
    def invalid_receipts(self) -> int:
        """Receipts-topic records that were neither a valid receipt nor a valid watermark."""
        return self.intake.invalid

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
        if receipt.event_id not in self._refs:
            self._remember(
                EventRef(
                    receipt.event_id,
                    receipt.event_type,
                    receipt.partition,
                    receipt.offset,
                    receipt.published_at_ns,
                )
            )
        key = (receipt.service, receipt.instance)
        known = per_event.get(key)
        # A replaying consumer may report again: the first application is the one that counts.
        if known is None or receipt.applied_at_ns < known.applied_at_ns:
            per_event[key] = receipt

    def _remember(self, ref: EventRef) -> None:
        self._refs[ref.event_id] = ref
        self._refs.move_to_end(ref.event_id)
        while len(self._refs) > self.max_events:
            self._refs.popitem(last=False)

    def track(self, published: Published) -> None:
        """Remember where a published event is (the publisher calls this on every publish)."""
        with self._cond:
            self._remember(
                EventRef(
                    published.event_id,
                    published.event_type,
                    published.partition,
                    published.offset,
                    published.published_at_ns,
                    published.source,
                )
            )
            self._cond.notify_all()

    # -- catching up

    def caught_up(self) -> bool:
        """Whether everything that was in the topic at :meth:`start` has been read."""
        with self._cond:
            return self._caught_up()

    def _caught_up(self) -> bool:
        return all(self._positions.get(tp, 0) >= end for tp, end in self._targets.items())

    def catch_up(self, timeout: float) -> None:
        """Wait until everything that was in the topic at start has been read."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._caught_up():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BrokerUnavailableError(
                        f"could not read {self.topics.receipts} up to its end within {timeout:g} s"
                        + (f" ({self.last_error})" if self.last_error else "")
                    )
                self._cond.wait(min(remaining, 0.2))

    # -- answers

    def _status(self, event_id: uuid.UUID, now_ns: int) -> EventStatus:
        receipts = self._index.get(event_id, {}).values()
        return build_status(event_id, self._refs.get(event_id), receipts, self.fleet, now_ns)

    def status(self, event_id: uuid.UUID) -> EventStatus:
        """Which instances applied ``event_id`` so far, when, and which have not."""
        with self._cond:
            return self._status(event_id, time.time_ns())

    def fleet_status(self, *, lag: bool = True) -> FleetStatus:
        """Every instance known from watermarks, with lag behind the events topic's end."""
        ends = self.events.end_offsets() if lag else None
        with self._cond:
            return self.fleet.status(time.time_ns(), ends, self.refused)

    def locate(self, event_id: uuid.UUID, *, timeout: float, since: datetime | None = None) -> bool:
        """Find ``event_id`` in the events topic (since ``since``, default ``locate_lookback``
        ago) when its position is not known yet; whether it is known now."""
        with self._cond:
            if event_id in self._refs:
                return True
        ref = self.events.locate(
            event_id, since=since or datetime.now(UTC) - self.locate_lookback, timeout=timeout
        )
        if ref is None:
            return False
        with self._cond:
            self._remember(ref)
            self._cond.notify_all()
        return True

    def wait_in_force(
        self,
        event: uuid.UUID | Published,
        services: Sequence[str] | None = None,
        *,
        timeout: float,
        min_instances: int = 1,
        silent_ok: bool = False,
    ) -> InForce:
        """Block until ``event`` is applied by every instance asked about.

        ``services=None``: every instance of every service in the fleet (known from
        watermarks; at least one must be known, and the tracker must have read what
        the topic held at its start). Named services: each needs ``min_instances``
        instances that applied it, and every instance of it known from watermarks.
        A silent instance that has not applied it keeps it not in force, unless
        ``silent_ok`` (then it is listed in :attr:`InForce.silent`). Raises
        :class:`~producer.exceptions.NotInForceError` naming the missing services
        and the silent and pending instances after ``timeout`` seconds.
        """
        if self._thread is None:
            raise ConfigError("the receipt tracker is not started: call start() first")
        if min_instances < 1:
            raise ConfigError(f"min_instances must be >= 1, got {min_instances}")
        if isinstance(event, uuid.UUID):
            event_id = event
        else:
            self.track(event)
            event_id = event.event_id
        names = _parse_services(services) if services is not None else None
        deadline = time.monotonic() + timeout
        located = False
        while True:
            with self._cond:
                status = self._status(event_id, time.time_ns())
                wanted = names if names is not None else self.fleet.services()
                verdict = judge(status, wanted, min_instances=min_instances, silent_ok=silent_ok)
                if verdict.done and (names is not None or self._caught_up()):
                    return in_force(status, wanted, min_instances, verdict.silent)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._raise(status, wanted, verdict, timeout)
                unknown = event_id not in self._refs and event_id not in self._index
                if not unknown or located:
                    self._cond.wait(min(remaining, 0.5))
                    continue
            located = True
            try:  # published elsewhere: find it in the events topic, within the timeout
                self.locate(event_id, timeout=max(0.1, remaining))
            except BrokerUnavailableError as exc:
                self.last_error = str(exc)

    def _raise(
        self, status: EventStatus, wanted: list[str], verdict: Verdict, timeout: float
    ) -> InForce:
        message = not_in_force_message(status, wanted, verdict, timeout)
        if self.last_error:
            message += f"; receipts unreadable: {self.last_error}"
        raise NotInForceError(
            message,
            event_id=status.event_id,
            missing=verdict.missing,
            status=status,
            silent=verdict.silent,
            pending=verdict.pending,
        )
