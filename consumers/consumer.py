"""Keep a local :class:`RevocationState` in step with the events topic (kafka-python).

Guarantees, and why:

* **Every instance sees every event.** Each instance assigns itself *all*
  partitions of the events topic with ``assign()``: no consumer group, nothing
  committed. Replicas of one service therefore never split the stream between
  them. On start an instance replays the retained history (or warms up from a
  :class:`~consumers.stores.ConsumerSnapshot` and replays only what follows
  its offsets); replay is safe because applying is a join.
* **Ready means caught up.** ``ready`` turns true only once the position on
  every partition has reached the high watermark read at start, i.e. every
  revocation published before the instance started is in force.
* **Bad records never apply, never stop the consumer, never vanish.** Anything
  :func:`schemas.decode` refuses (undecodable, unknown type, schema-invalid,
  unsupported version, missing or unknown-kid or bad signature), and any record
  whose handling raises, is published to the dead-letter topic with the
  ``revocast.dlq.*`` headers first, then its original key, value and headers
  (original headers in the ``revocast.dlq.`` namespace are dropped, so a producer
  cannot plant a reason), and the consumer moves on. A record the Kafka client
  cannot even parse (an invalid UTF-8 header name, a corrupt batch) is skipped by
  offset and dead-lettered as ``unparseable`` with its coordinates (the client
  never hands over its bytes; ``kcat -C -t TOPIC -p P -o O -c 1`` shows them).
  Every instance that refuses a record dead-letters its own copy (tagged with
  service/instance). When the outbox is full (the dead-letter topic unreachable
  for long) a dead letter is dropped with an error log naming its coordinates
  rather than stalling applies: the record itself stays in the events topic.
* **A stuck consumer does not look healthy.** Lag is measured against end
  offsets read from the broker (ListOffsets), and the freshness guard turns
  ``ready`` false, the ready gauge 0 and privileged checks to 503 when the loop
  stops turning, polls keep failing, or a position stops advancing while the
  broker holds more (:meth:`consumers.freshness.FreshnessGuard.problem`).
* **Back within about a second of the broker.** Reconnect backoff is capped at
  1 s (kafka-python's default cap is 30 s), poll failures back off to at most 2 s.
* **Receipts never slow applies.** The apply path puts a tuple on a queue; a
  worker thread builds the :class:`schemas.Receipt` and hands it to a
  ``KafkaProducer`` (acks=1, small linger). If the queue is full the receipt is
  dropped and counted (``revocast_consumer_receipts_dropped_total``): the
  revocation is still in force, only its report is lost. Pending receipts and
  dead letters are flushed on :meth:`RevocationConsumer.stop`.
* **Idempotent by event id.** A bounded, expiring set of seen event ids
  suppresses duplicate receipts and metrics within a run. After a restart the
  replayed history is receipted again: a receipt says "this instance has the
  event in force", which is new information for a new process.

Not guaranteed: exactly-once receipts across restarts; freshness when the
producer side publishes no heartbeats (the view then looks stale, and
privileged checks are denied, by design).

    with RevocationConsumer("127.0.0.1:9092", TopicNames(), "orders", "orders-1",
                            KeySet.load("jwks.json")) as consumer:
        consumer.wait_ready(30)
        consumer.state.check(claims, header)
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.net.compat import KafkaNetClient
from prometheus_client import CollectorRegistry

from consumers.freshness import FreshnessGuard, FreshnessReport
from consumers.metrics import ConsumerMetrics, log_extra
from consumers.state import RevocationState
from consumers.stores import ConsumerSnapshot, SharedView, SnapshotStore
from schemas import (
    BrokerUnavailableError,
    ConfigError,
    Envelope,
    Heartbeat,
    InvalidEventError,
    KeySet,
    Receipt,
    TopicNames,
    decode,
)
from schemas.topics import (
    DLQ_ERROR_HEADER,
    DLQ_REASON_HEADER,
    DLQ_SERVICE_HEADER,
    DLQ_SOURCE_HEADER,
)

__all__ = [
    "ConsumerStats",
    "DecoderCrashError",
    "EventIdSet",
    "RevocationConsumer",
    "dead_letter_headers",
]

log = logging.getLogger(__name__)

_REFRESH_INTERVAL: Final = 30.0  # seconds between checks for new partitions
_POSITION_INTERVAL: Final = 1.0  # seconds between position/lag (ListOffsets) refreshes


@dataclass(frozen=True, slots=True)
class ConsumerStats:
    records: int
    """Records read from the events topic since start (replay included)."""
    applied: int
    heartbeats: int
    duplicates: int
    dead_lettered: int
    receipts_sent: int
    receipts_dropped: int
    dead_letters_dropped: int = 0
    """Dead letters not published because the outbox stayed full (logged with coordinates)."""


class EventIdSet:
    """A bounded set of event ids that forgets each id ``ttl`` seconds after it was added."""

    def __init__(self, max_size: int = 200_000, ttl: float = 3600.0) -> None:
        self.max_size = max_size
        self.ttl = ttl
        # An OrderedDict, not a dict: after deletions from its front, a dict's
        # next(iter()) scans the dead slots (90 us per add past 200k ids, measured),
        # while OrderedDict finds and pops its oldest entry in O(1).
        self._seen: OrderedDict[uuid.UUID, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._seen

    def add(self, event_id: uuid.UUID, now: float) -> bool:
        """Remember ``event_id``; ``False`` when it was already there (a duplicate)."""
        seen = self._seen
        # Insertion order is expiry order (constant ttl), so the oldest is first.
        while seen:
            oldest = next(iter(seen))
            if len(seen) < self.max_size and seen[oldest] > now:
                break
            seen.popitem(last=False)
        if event_id in seen:
            return False
        seen[event_id] = now + self.ttl
        return True


def dead_letter_headers(
    record_headers: Sequence[tuple[str, bytes]] | None,
    exc: InvalidEventError,
    source: str,
    refused_by: str,
) -> list[tuple[str, bytes]]:
    """The ``revocast.dlq.*`` headers (see :mod:`schemas.topics`), then the original ones.

    Original headers in the ``revocast.dlq.`` namespace are dropped: whoever wrote
    the record must not be able to plant a reason that readers take first.
    """
    ours = DLQ_REASON_HEADER.rsplit(".", 1)[0] + "."
    return [
        (DLQ_REASON_HEADER, exc.reason.encode()),
        (DLQ_ERROR_HEADER, str(exc).encode()[:2000]),
        (DLQ_SOURCE_HEADER, source.encode()),
        (DLQ_SERVICE_HEADER, refused_by.encode()),
        *(h for h in (record_headers or ()) if not str(h[0]).startswith(ours)),
    ]


class _ClientTracker:
    """A ``kafka_client`` factory that remembers what it built.

    kafka-python 3 starts a network thread and opens sockets *inside* the
    KafkaConsumer/KafkaProducer constructor; when bootstrapping then fails, the
    half-built object is never returned and nothing closes them. Building the
    client through this factory lets us close it.
    """

    def __init__(self) -> None:
        self.clients: list[Any] = []

    def __call__(self, **config: Any) -> Any:
        client = KafkaNetClient(**config)
        self.clients.append(client)
        return client

    def close_all(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                client.close()
        self.clients.clear()


class DecoderCrashError(InvalidEventError):
    """A record that crashed decoding in an unforeseen way: dead-letter it, do not die."""

    reason = "invalid"


class UnparseableRecordError(InvalidEventError):
    """A record the Kafka client library could not parse (bad header name, corrupt batch)."""

    reason = "unparseable"


# How long the apply path waits for room in the outbox for a dead letter (seconds).
_DLQ_PUT_TIMEOUT: Final = 0.05
# Reconnect quickly after a broker restart: kafka-python's default cap is 30 s.
_RECONNECT: Final = {"reconnect_backoff_ms": 50, "reconnect_backoff_max_ms": 1000}


@dataclass(frozen=True, slots=True)
class _Coordinates:
    """Where an unparseable record sits: what is known of it without its bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


# Outbox items: ("receipt", args) or ("dlq", args) or ("view", envelope) or ("snapshot", snap)
_Item = tuple[str, Any]


def require_trusted_keys(keys: KeySet | None, require_signature: bool) -> None:
    """Fail closed at construction: a consumer that must verify needs keys to verify with."""
    if require_signature and not keys:
        raise ConfigError(
            "require_signature is on but no trusted event-signing keys were given "
            "(set the JWKS, or turn require_signature off for development only)"
        )


class RevocationConsumer:
    """Reads all partitions of the events topic into a :class:`RevocationState`.

    ``keys`` are the trusted event-signing keys; with ``require_signature``
    (default) unsigned events are dead-lettered. ``state`` lets several readers
    share a state object; ``shared_view`` receives every applied event (e.g. a
    :class:`~consumers.redis_store.RedisRevocationStore`); ``snapshots`` enables
    warm-up from, and periodic saving of, a snapshot. ``kafka_options`` are
    passed to both kafka-python clients (security settings and the like),
    ``consumer_options`` and ``producer_options`` to one of them.
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        topics: TopicNames,
        service: str,
        instance: str,
        keys: KeySet | None,
        *,
        require_signature: bool = True,
        state: RevocationState | None = None,
        shared_view: SharedView | None = None,
        snapshots: SnapshotStore | None = None,
        snapshot_interval: float = 30.0,
        max_staleness: float = 5.0,
        flavor: str = "kafka-python",
        registry: CollectorRegistry | None = None,
        on_applied: Callable[[Envelope, int], None] | None = None,
        publish_receipts: bool = True,
        outbox_size: int = 100_000,
        topic_timeout: float = 15.0,
        connect_timeout: float = 10.0,
        poll_interval: float = 0.1,
        kafka_options: Mapping[str, Any] | None = None,
        consumer_options: Mapping[str, Any] | None = None,
        producer_options: Mapping[str, Any] | None = None,
    ) -> None:
        require_trusted_keys(keys, require_signature)
        self.bootstrap_servers = bootstrap_servers
        self.topics = topics
        self.service = service
        self.instance = instance
        self.flavor = flavor
        self.keys = keys
        self.require_signature = require_signature
        self.state = state if state is not None else RevocationState()
        self.guard = FreshnessGuard(max_staleness)
        self.metrics = ConsumerMetrics(service, instance, flavor=flavor, registry=registry)
        self.metrics.track_ready(lambda: self.guard.healthy)
        self._shared_view = shared_view
        self._snapshots = snapshots
        self._snapshot_interval = snapshot_interval
        self._on_applied = on_applied
        self._publish_receipts = publish_receipts
        self._topic_timeout = topic_timeout
        self._connect_timeout = connect_timeout
        self._poll_ms = max(1, int(poll_interval * 1000))
        self._kafka_options = dict(kafka_options or {})
        self._consumer_options = dict(consumer_options or {})
        self._producer_options = dict(producer_options or {})
        self._seen = EventIdSet()
        self._outbox: queue.Queue[_Item] = queue.Queue(maxsize=outbox_size)
        self._consumer: KafkaConsumer | None = None
        self._producer: KafkaProducer | None = None
        self._start_end: dict[int, int] = {}
        self._next: dict[int, int] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._outbox_thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._warmed_from: ConsumerSnapshot | None = None
        self._counts = dict.fromkeys(
            ("records", "applied", "heartbeats", "duplicates", "dead_lettered"), 0
        )
        self._receipts_sent = 0
        self._receipts_dropped = 0
        self._receipts_failed = 0
        self._dead_letters_dropped = 0
        self._who = f"{service}/{instance}"

    # ----------------------------------------------------------- lifecycle

    def start(self) -> RevocationConsumer:
        """Connect, assign and seek (raising here if Kafka is unreachable), then
        consume in a background thread. Returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("consumer already started")
        self._open()
        self._thread = threading.Thread(
            target=self._run_loop, name=f"revocast-consumer-{self._who}", daemon=True
        )
        self._thread.start()
        return self

    def run(self) -> None:
        """Consume in the calling thread until :meth:`stop` (from another thread or a
        signal handler). Raises what ended the loop, after closing cleanly."""
        if self._thread is not None:
            raise RuntimeError("consumer already started")
        self._thread = threading.current_thread()
        self._open()
        self._run_loop()
        if self._error is not None:
            raise self._error

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until caught up with the history seen at start; ``False`` on timeout.

        Raises the consumer thread's error if it died.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._error is not None:
                raise self._error
            step = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if step <= 0:
                return self._ready.is_set()
            if self._ready.wait(step):
                return True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop consuming, save a last snapshot, flush receipts and dead letters."""
        self._stop.set()
        thread = self._thread
        if thread is None:
            self._close(timeout)  # never started: just release what exists
        elif thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> RevocationConsumer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --------------------------------------------------------------- views

    @property
    def ready(self) -> bool:
        """Caught up with the history seen at start, and not stuck since."""
        return self._ready.is_set() and self.guard.problem() is None

    @property
    def error(self) -> BaseException | None:
        """The error that ended the consumer thread, if one did."""
        return self._error

    @property
    def warmed_from(self) -> ConsumerSnapshot | None:
        """The snapshot this run started from, if any."""
        return self._warmed_from

    def freshness(self, now: float | None = None) -> FreshnessReport:
        return self.guard.report(now)

    def denial(self, now: float | None = None) -> str | None:
        """Why a privileged check must be denied now (see :meth:`FreshnessGuard.denial`)."""
        if self._error is not None:
            return f"revocation consumer stopped: {self._error}"
        return self.guard.denial(now)

    def positions(self) -> dict[int, int]:
        """Next offset to read per partition (everything before it is applied)."""
        return dict(self._next)

    def stats(self) -> ConsumerStats:
        c = self._counts
        return ConsumerStats(
            records=c["records"],
            applied=c["applied"],
            heartbeats=c["heartbeats"],
            duplicates=c["duplicates"],
            dead_lettered=c["dead_lettered"],
            receipts_sent=self._receipts_sent,
            receipts_dropped=self._receipts_dropped + self._receipts_failed,
            dead_letters_dropped=self._dead_letters_dropped,
        )

    # ------------------------------------------------------------- opening

    @property
    def _kafka(self) -> KafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the consumer is not open")
        return self._consumer

    def _open(self) -> None:
        options: dict[str, Any] = {
            **_RECONNECT,
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": f"revocast-{self._who}",
            "bootstrap_timeout_ms": int(self._connect_timeout * 1000),
            **self._kafka_options,
        }
        tracker = _ClientTracker()
        options["kafka_client"] = tracker
        try:
            self._consumer = KafkaConsumer(
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                allow_auto_create_topics=False,
                **{**options, **self._consumer_options},
            )
            # Always: besides receipts, the producer carries dead letters.
            self._producer = KafkaProducer(
                **{
                    "acks": 1,
                    **_RECONNECT,
                    "linger_ms": 2,
                    "max_block_ms": 10_000,
                    **options,
                    **self._producer_options,
                }
            )
        except KafkaError as exc:
            # kafka-python 3 reports an unreachable cluster as KafkaTimeoutError
            # ("Unable to bootstrap"); 2.x raised NoBrokersAvailable.
            self._close_clients()
            tracker.close_all()
            raise BrokerUnavailableError(
                f"no Kafka broker answered at {self.bootstrap_servers!r} within "
                f"{self._connect_timeout:g}s (consumer {self._who}): {exc}"
            ) from None
        try:
            self._assign_all()
        except BaseException:
            self._close_clients()
            raise
        self._outbox_thread = threading.Thread(
            target=self._outbox_loop, name=f"revocast-outbox-{self._who}", daemon=True
        )
        self._outbox_thread.start()

    def _partitions(self, deadline: float) -> set[int]:
        while True:
            try:
                found = self._kafka.partitions_for_topic(self.topics.events)
            except KafkaError as exc:
                raise BrokerUnavailableError(
                    f"cannot read metadata of {self.topics.events!r}: {exc}"
                ) from None
            if found:
                return set(found)
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"events topic {self.topics.events!r} does not exist on "
                    f"{self.bootstrap_servers!r} (create it, or check the topic prefix)"
                )
            time.sleep(0.2)

    def _assign_all(self) -> None:
        consumer = self._kafka
        partitions = self._partitions(time.monotonic() + self._topic_timeout)
        tps = [TopicPartition(self.topics.events, p) for p in sorted(partitions)]
        try:
            consumer.assign(tps)
            end = consumer.end_offsets(tps, timeout_ms=int(self._topic_timeout * 1000))
        except KafkaError as exc:
            raise BrokerUnavailableError(
                f"cannot read the end offsets of {self.topics.events!r}: {exc}"
            ) from None
        snapshot = self._load_snapshot({tp.partition: int(end[tp]) for tp in tps})
        try:
            for tp in tps:
                offset = snapshot.offsets.get(tp.partition) if snapshot is not None else None
                if offset is None:
                    consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, offset)
            for tp in tps:
                position = consumer.position(tp, timeout_ms=int(self._topic_timeout * 1000))
                self._next[tp.partition] = int(position or 0)
        except KafkaError as exc:
            raise BrokerUnavailableError(
                f"cannot assign {self.topics.events!r} partitions: {exc}"
            ) from None
        self._start_end = {tp.partition: int(end[tp]) for tp in tps}
        self.guard.set_partitions(self._start_end)
        self.guard.set_not_ready(
            f"replaying {sum(max(0, e - self._next[p]) for p, e in self._start_end.items())} "
            "retained records"
        )
        self.metrics.track_staleness(self._start_end, self.guard.staleness)
        log.info(
            "revocation consumer assigned %d partitions of %s",
            len(tps),
            self.topics.events,
            extra=log_extra(
                service=self.service,
                instance=self.instance,
                start_offsets=self._next,
                end_offsets=self._start_end,
                snapshot=snapshot is not None,
            ),
        )
        self._check_ready()

    def _load_snapshot(self, end: Mapping[int, int]) -> ConsumerSnapshot | None:
        """The stored snapshot, merged into the state, if it fits the topic as it is."""
        if self._snapshots is None:
            return None
        try:
            snapshot = self._snapshots.load(self.topics.events)
        except Exception as exc:
            # A missing or unreadable snapshot only costs a longer replay.
            log.warning(
                "cannot load snapshot, replaying all history: %s",
                exc,
                extra=log_extra(service=self.service, instance=self.instance),
            )
            return None
        if snapshot is None or snapshot.topic != self.topics.events:
            return None
        ahead = {p: o for p, o in snapshot.offsets.items() if o > end.get(p, 0)}
        if ahead:
            # Offsets beyond the end: the topic was recreated or truncated, so the
            # snapshot describes another log. Trust only a full replay.
            log.warning(
                "snapshot offsets %s are beyond the topic's end %s; replaying all history",
                ahead,
                dict(end),
                extra=log_extra(service=self.service, instance=self.instance),
            )
            return None
        try:
            self.state.merge(snapshot.restore())
        except Exception as exc:
            log.warning(
                "snapshot unusable, replaying all history: %s",
                exc,
                extra=log_extra(service=self.service, instance=self.instance),
            )
            return None
        self._warmed_from = snapshot
        return snapshot

    # ---------------------------------------------------------------- loop

    def _run_loop(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            self._error = exc
            self.guard.set_not_ready(f"consumer stopped on error: {exc}")
            log.exception(
                "revocation consumer failed",
                extra=log_extra(service=self.service, instance=self.instance),
            )
        finally:
            self._close()

    def _loop(self) -> None:
        consumer = self._kafka
        next_positions = time.monotonic()
        next_refresh = time.monotonic() + _REFRESH_INTERVAL
        next_snapshot = time.monotonic() + self._snapshot_interval
        failures = 0
        while not self._stop.is_set():
            self.guard.beat()
            try:
                batches = consumer.poll(timeout_ms=self._poll_ms)
            except Exception as exc:
                # Anything, not only KafkaError: a record kafka-python cannot parse
                # raises UnicodeDecodeError or CorruptRecordError from inside poll().
                if self._skip_unparseable(exc):
                    continue
                failures += 1
                self.guard.poll_failed(f"{type(exc).__name__}: {exc}")
                log.warning(
                    "poll failed (%d in a row): %s: %s",
                    failures,
                    type(exc).__name__,
                    exc,
                    extra=log_extra(service=self.service, instance=self.instance),
                )
                self._stop.wait(min(2.0, 0.1 * 2**failures))
                continue
            if failures:
                failures = 0
                self.guard.poll_ok()
            for records in batches.values():
                for record in records:
                    try:
                        self._handle(record)
                    except Exception as exc:  # no single record may stop revocations
                        self._dead_letter(
                            record,
                            DecoderCrashError(f"applying failed: {type(exc).__name__}: {exc}"),
                        )
            now = time.monotonic()
            if not self._ready.is_set() and (not batches or now >= next_positions):
                self._check_ready()
            if now >= next_positions:
                next_positions = now + _POSITION_INTERVAL
                self._update_lag()
            if now >= next_refresh:
                next_refresh = now + _REFRESH_INTERVAL
                self._refresh_partitions()
            if self._snapshots is not None and now >= next_snapshot:
                next_snapshot = now + self._snapshot_interval
                self._queue_snapshot()

    def _handle(self, record: Any) -> None:
        received = time.time()
        self._counts["records"] += 1
        partition: int = record.partition
        self._next[partition] = record.offset + 1
        try:
            envelope = decode(record.value, self.keys, require_signature=self.require_signature)
        except InvalidEventError as exc:
            self._dead_letter(record, exc)
            return
        except Exception as exc:  # a decoder bug must not stop revocations
            self._dead_letter(record, DecoderCrashError(f"{type(exc).__name__}: {exc}"))
            return
        self.guard.observe(partition, envelope.published_at_ns / 1e9, received)
        event = envelope.event
        if isinstance(event, Heartbeat):
            self._counts["heartbeats"] += 1
            return
        if not self._seen.add(envelope.event_id, received):
            self._counts["duplicates"] += 1
            return
        self.state.apply(envelope, received)
        applied_ns = time.time_ns()
        self._counts["applied"] += 1
        ready = self._ready.is_set()
        self.metrics.applied(
            event.type, (applied_ns - envelope.published_at_ns) / 1e9 if ready else None
        )
        if self._publish_receipts:
            self._put(("receipt", (envelope, applied_ns, partition, record.offset)))
        if self._shared_view is not None:
            self._put(("view", envelope))
        if self._on_applied is not None:
            try:
                self._on_applied(envelope, applied_ns)
            except Exception:  # a listener's bug must not stop revocations
                log.exception(
                    "on_applied listener failed",
                    extra=log_extra(service=self.service, instance=self.instance),
                )

    def _skip_unparseable(self, exc: Exception) -> bool:
        """Skip the record kafka-python failed to parse; ``False`` if it cannot be located.

        kafka-python keeps the partition's parsed-records iterator, now dead, as its
        next in line, and spins on it inside ``poll()`` (every service then stops
        applying on every partition). Its ``next_fetch_offset`` is the offset of the
        record that failed (every record before it was handed out), so: drop the
        iterator, seek one past that offset, and dead-letter the coordinates.
        """
        fetcher = getattr(self._consumer, "_fetcher", None)
        part = getattr(fetcher, "_next_partition_records", None)
        if part is None or not hasattr(part, "next_fetch_offset"):
            return False
        tp = part.topic_partition
        offset = int(part.next_fetch_offset)
        with contextlib.suppress(Exception):
            part.drain()
        fetcher._next_partition_records = None  # type: ignore[union-attr]
        self._kafka.seek(tp, offset + 1)
        self._next[tp.partition] = offset + 1
        self._counts["records"] += 1
        self._dead_letter(
            _Coordinates(
                tp.topic, tp.partition, offset, key=f"{tp.topic}/{tp.partition}/{offset}".encode()
            ),
            UnparseableRecordError(
                f"the Kafka client cannot parse the record at offset {offset} "
                f"(or a batch it belongs to): {type(exc).__name__}: {exc}"
            ),
        )
        return True

    def _dead_letter(self, record: Any, exc: InvalidEventError) -> None:
        self._counts["dead_lettered"] += 1
        self.metrics.dead_lettered(exc.reason)
        source = f"{record.topic}/{record.partition}/{record.offset}"
        log.warning(
            "dead-lettering record %s: %s",
            source,
            exc.reason,
            extra=log_extra(
                service=self.service, instance=self.instance, reason=exc.reason, source=source
            ),
        )
        headers = dead_letter_headers(record.headers, exc, source, self._who)
        try:
            # A short wait, not a long one: while the dead-letter topic is down a
            # flood of bad records must not stall the applies of good ones.
            self._outbox.put(("dlq", (record.key, record.value, headers)), timeout=_DLQ_PUT_TIMEOUT)
        except queue.Full:
            self._dead_letters_dropped += 1
            log.error(
                "outbox full; dead letter for %s (%s) not published: the record stays in the "
                "events topic at that offset",
                source,
                exc.reason,
                extra=log_extra(service=self.service, instance=self.instance, source=source),
            )

    def _put(self, item: _Item) -> None:
        try:
            self._outbox.put_nowait(item)
        except queue.Full:
            self._receipts_dropped += 1
            self.metrics.receipt_dropped()

    def _check_ready(self) -> None:
        consumer = self._consumer
        if consumer is None or self._ready.is_set():
            return
        behind = 0
        for partition, end in self._start_end.items():
            if self._next.get(partition, 0) >= end:
                continue
            try:
                position = consumer.position(TopicPartition(self.topics.events, partition))
            except KafkaError:
                position = None
            if position is not None and position > self._next.get(partition, 0):
                self._next[partition] = int(position)
            behind += max(0, end - self._next.get(partition, 0))
        if behind:
            self.guard.set_not_ready(f"replaying: {behind} retained records to go")
            return
        self.guard.mark_ready()
        self.metrics.set_ready(True)
        self._ready.set()
        log.info(
            "revocation consumer ready",
            extra=log_extra(
                service=self.service,
                instance=self.instance,
                entries=len(self.state),
                records=self._counts["records"],
            ),
        )

    def _update_lag(self) -> None:
        # End offsets from the broker (ListOffsets), not the high watermark of the
        # last fetch: a consumer that stopped fetching would read lag 0 forever.
        consumer = self._kafka
        tps = [TopicPartition(self.topics.events, p) for p in self._next]
        try:
            ends: dict[Any, Any] = consumer.end_offsets(tps, timeout_ms=1000)
        except Exception:
            ends = {}
        for partition, offset in self._next.items():
            tp = TopicPartition(self.topics.events, partition)
            high = ends.get(tp)
            lag = max(0, int(high) - offset) if high is not None else None
            self.guard.set_position(partition, offset, lag)
            if lag is not None:
                self.metrics.set_lag(partition, lag)

    def _refresh_partitions(self) -> None:
        """Pick up partitions added to the topic since start (read from their beginning)."""
        consumer = self._kafka
        try:
            found = consumer.partitions_for_topic(self.topics.events) or set()
        except KafkaError:
            return
        new = sorted(set(found) - set(self._next))
        if not new:
            return
        tps = [TopicPartition(self.topics.events, p) for p in sorted(set(found))]
        consumer.assign(tps)
        for tp in tps:
            if tp.partition in self._next:
                consumer.seek(tp, self._next[tp.partition])
            else:
                consumer.seek_to_beginning(tp)
                self._next[tp.partition] = 0
        self.guard.set_partitions(self._next)
        self.metrics.track_staleness(new, self.guard.staleness)
        log.info(
            "new partitions of %s assigned: %s",
            self.topics.events,
            new,
            extra=log_extra(service=self.service, instance=self.instance),
        )

    def _take_snapshot(self) -> ConsumerSnapshot:
        # Called in the consumer thread between batches: the state holds every
        # event before these offsets.
        return ConsumerSnapshot(
            topic=self.topics.events, offsets=dict(self._next), state=self.state.snapshot()
        )

    def _queue_snapshot(self) -> None:
        self._put(("snapshot", self._take_snapshot()))

    # -------------------------------------------------------------- outbox

    def _outbox_loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item[0] == "stop":
                return
            try:
                self._deliver(item)
            except Exception as exc:
                log.warning(
                    "outbox %s failed: %s",
                    item[0],
                    exc,
                    extra=log_extra(service=self.service, instance=self.instance),
                )

    def _deliver(self, item: _Item) -> None:
        kind, payload = item
        producer = self._producer
        if kind == "receipt" and producer is not None:
            envelope, applied_ns, partition, offset = payload
            receipt = Receipt(
                service=self.service,
                instance=self.instance,
                flavor=self.flavor,
                event_id=envelope.event_id,
                event_type=envelope.event.type,
                published_at_ns=envelope.published_at_ns,
                applied_at_ns=applied_ns,
                partition=partition,
                offset=offset,
            )
            future = producer.send(
                self.topics.receipts, key=str(envelope.event_id).encode(), value=receipt.to_bytes()
            )
            future.add_callback(self._receipt_sent)
            future.add_errback(self._receipt_failed)
        elif kind == "dlq" and producer is not None:
            key, value, headers = payload
            producer.send(self.topics.dead_letter, key=key, value=value, headers=headers)
        elif kind == "view" and self._shared_view is not None:
            self._shared_view.apply(payload)
        elif kind == "snapshot" and self._snapshots is not None:
            self._snapshots.save(payload)

    # Producer callbacks run on kafka-python's I/O thread: they own their counters.
    def _receipt_sent(self, _metadata: Any) -> None:
        self._receipts_sent += 1

    def _receipt_failed(self, exc: BaseException) -> None:
        self._receipts_failed += 1
        self.metrics.receipt_dropped()
        log.warning(
            "receipt not published: %s",
            exc,
            extra=log_extra(service=self.service, instance=self.instance),
        )

    # ------------------------------------------------------------- closing

    def _close(self, timeout: float = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready.clear()
        self.metrics.set_ready(False)
        self.guard.set_not_ready("the consumer is stopped")
        if self._outbox_thread is not None:
            with contextlib.suppress(queue.Full):
                self._outbox.put(("stop", None), timeout=timeout)
            self._outbox_thread.join(timeout)
        if self._snapshots is not None and self._consumer is not None and self._error is None:
            try:
                self._snapshots.save(self._take_snapshot())
            except Exception as exc:
                log.warning(
                    "last snapshot not saved: %s",
                    exc,
                    extra=log_extra(service=self.service, instance=self.instance),
                )
        if self._producer is not None:
            try:
                self._producer.flush(timeout=timeout)
            except KafkaError as exc:
                log.warning(
                    "receipts not all flushed on stop: %s",
                    exc,
                    extra=log_extra(service=self.service, instance=self.instance),
                )
        self._close_clients()

    def _close_clients(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(KafkaError):
                self._consumer.close(autocommit=False, timeout_ms=2000)
        if self._producer is not None:
            with contextlib.suppress(KafkaError):
                self._producer.close(timeout=5)
