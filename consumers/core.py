"""What every engine shares: decode → verify → apply → freshness → dead letters → watermarks.

An *engine* (:mod:`consumers.engines`) only fetches: it assigns every partition,
seeks, commits nothing and hands each record to :meth:`ConsumerCore.handle` with
its partition, offset, value and the engine's own record object (read only when
the record must be dead-lettered). Everything that decides lives here, once, so
every engine gives the same answers:

* **Bad records never apply, never stop the consumer, never vanish.** Anything
  :func:`schemas.decode_records` refuses (undecodable, unknown type,
  schema-invalid, unsupported version, missing, unknown-kid or bad signature, a
  batch record with one bad event: the whole record), and any record whose
  handling raises, is published to the dead-letter topic with the
  ``revocast.dlq.*`` headers first, then its original key, value and headers
  (original headers in the ``revocast.dlq.`` namespace are dropped, so a producer
  cannot plant a reason). A record the Kafka client cannot parse is dead-lettered
  as ``unparseable`` by its coordinates (:meth:`ConsumerCore.unparseable`).
  When the outbox stays full a dead letter is dropped with an error log naming
  its coordinates rather than stalling applies: the record stays in the topic.
* **Watermarks, not one receipt per event.** After a poll batch that advanced a
  position, one :class:`schemas.Watermark` names the partitions that advanced and
  their next offsets ("applied every record before these offsets, at
  ``applied_at_ns``"), coalesced to at most one every :attr:`min_interval` (a few
  ms); while idle one is sent every ``period_s`` naming every partition, so the
  watermark doubles as presence. ``applied_at_ns`` is the time the newest batch it
  covers was applied, so an event's "in force at" is exact to the batch (never
  earlier than the truth). Signed with the instance's own Ed25519 key when one is
  given (JWS ``typ`` :data:`schemas.WATERMARK_JWS_TYPE`), keyed ``service/instance``.
* **One signature check per record, the cheapest available.** A batch record
  is verified once for all its events; the Ed25519 check runs in libsodium when
  PyNaCl is installed (:mod:`consumers.core_sodium`: same verdicts).
* **Nothing slow on the apply path.** Applying an event touches only the
  in-memory state and counters; watermarks, dead letters, shared-view writes and
  snapshots go through one outbox thread, one item per *batch* (never per event,
  unless per-event receipts are on for readers that predate watermarks).
* **Idempotent by event id within a run.** A bounded, expiring set of seen event
  ids suppresses duplicate applies, metrics and ``on_applied`` calls.

Not guaranteed: a watermark that the broker refused or that the full outbox
dropped is not resent as such; the next one (at most ``period_s`` later) carries
the same or newer offsets, so silence shows and nothing is claimed early.
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

from prometheus_client import CollectorRegistry

from consumers.core_sodium import sodium_keys
from consumers.freshness import FreshnessGuard, FreshnessReport
from consumers.metrics import ConsumerMetrics, log_extra
from consumers.state import RevocationState
from consumers.stores import ConsumerSnapshot, SharedView, SnapshotStore
from schemas import (
    ConfigError,
    Envelope,
    Heartbeat,
    InvalidEventError,
    KeySet,
    Receipt,
    SigningKey,
    TopicNames,
    Watermark,
    decode_records,
)
from schemas.topics import (
    DLQ_ERROR_HEADER,
    DLQ_REASON_HEADER,
    DLQ_SERVICE_HEADER,
    DLQ_SOURCE_HEADER,
)
from schemas.watermark import MAX_REFUSED_PER_WATERMARK

__all__ = [
    "ConsumerCore",
    "ConsumerStats",
    "CoreViews",
    "DecoderCrashError",
    "Delivered",
    "EventIdSet",
    "RawOf",
    "Send",
    "UnparseableRecordError",
    "dead_letter_headers",
    "require_trusted_keys",
]

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]
RawOf = Callable[[Any], tuple[bytes | None, Headers | None]]
"""An engine's ``record -> (key, headers)``, called only to dead-letter a record."""
Delivered = Callable[[BaseException | None], None]
"""Told once whether a sent record was acknowledged (``None``) or failed (the error)."""
Send = Callable[[str, bytes | None, bytes | None, Headers | None, Delivered | None], None]
"""An engine's producer: ``send(topic, key, value, headers, delivered)``, non-blocking or
briefly so; ``delivered`` is called from the client's own thread."""

# How long the apply path waits for room in the outbox for a dead letter (seconds).
_DLQ_PUT_TIMEOUT: Final = 0.05
WATERMARK_MIN_INTERVAL: Final = 0.005
"""Seconds between two watermarks of a caught-up instance (coalescing)."""
REPLAY_WATERMARK_INTERVAL: Final = 0.1
"""Seconds between two watermarks while replaying history (nobody waits on them yet)."""


@dataclass(frozen=True, slots=True)
class ConsumerStats:
    records: int
    """Records read from the events topic since start (replay included)."""
    applied: int
    heartbeats: int
    duplicates: int
    dead_lettered: int
    receipts_sent: int
    """Records published to the receipts topic (watermarks, and receipts when on)."""
    receipts_dropped: int
    dead_letters_dropped: int = 0
    """Dead letters not published because the outbox stayed full (logged with coordinates)."""
    watermarks_sent: int = 0


class CoreViews:
    """The read-only views every consumer facade answers from its :class:`ConsumerCore`
    (the kafka-python/confluent :class:`~consumers.consumer.RevocationConsumer` and the
    faust one alike)."""

    core: ConsumerCore
    guard: FreshnessGuard
    _warmed_from: ConsumerSnapshot | None

    @property
    def warmed_from(self) -> ConsumerSnapshot | None:
        """The snapshot this run started from, if any."""
        return self._warmed_from

    @property
    def topic_id(self) -> str | None:
        """Kafka's id of the events topic, as read at start."""
        return self.core.topic_id

    def freshness(self, now: float | None = None) -> FreshnessReport:
        return self.guard.report(now)

    def positions(self) -> dict[int, int]:
        """Next offset to read per partition (everything before it is applied)."""
        return dict(self.core.next)

    def stats(self) -> ConsumerStats:
        return self.core.stats()


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
    record_headers: Headers | None,
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


class DecoderCrashError(InvalidEventError):
    """A record that crashed decoding in an unforeseen way: dead-letter it, do not die."""

    reason = "invalid"


class UnparseableRecordError(InvalidEventError):
    """A record the Kafka client library could not parse (bad header name, corrupt batch)."""

    reason = "unparseable"


def require_trusted_keys(keys: KeySet | None, require_signature: bool) -> None:
    """Fail closed at construction: a consumer that must verify needs keys to verify with."""
    if require_signature and not keys:
        raise ConfigError(
            "require_signature is on but no trusted event-signing keys were given "
            "(set the JWKS, or turn require_signature off for development only)"
        )


def _no_raw(_record: Any) -> tuple[bytes | None, Headers | None]:
    return None, None


# Outbox items: ("send", (topic, key, value, headers)), ("receipt", args),
# ("view", envelope), ("snapshot", snapshot), ("stop", None)
_Item = tuple[str, Any]


class ConsumerCore:
    """The engine-neutral part of one consumer instance (see the module docstring).

    Single-threaded by contract: :meth:`handle`, :meth:`batch_done`, :meth:`tick`
    and the position setters are called from the engine's consumer thread only;
    the views (``state``, ``guard``, :meth:`stats`) may be read from any thread.
    """

    def __init__(
        self,
        topics: TopicNames,
        service: str,
        instance: str,
        keys: KeySet | None,
        *,
        engine: str = "kafka-python",
        require_signature: bool = True,
        state: RevocationState | None = None,
        max_staleness: float = 5.0,
        registry: CollectorRegistry | None = None,
        shared_view: SharedView | None = None,
        snapshots: SnapshotStore | None = None,
        on_applied: Callable[[Envelope, int], None] | None = None,
        publish_receipts: bool = True,
        per_event_receipts: bool = False,
        instance_key: SigningKey | None = None,
        watermark_period: float = 1.0,
        outbox_size: int = 100_000,
        raw_of: RawOf = _no_raw,
    ) -> None:
        require_trusted_keys(keys, require_signature)
        if not 0 < watermark_period <= 3600:
            raise ConfigError("watermark_period must be within (0, 3600] seconds")
        self.topics = topics
        self.service = service
        self.instance = instance
        self._capped_warned_at = -1e18  # monotonic seconds of the last warning
        self.engine = engine
        self.keys = sodium_keys(keys)
        """The trusted keys, their signatures checked by libsodium when PyNaCl is there."""
        self.require_signature = require_signature
        self.state = state if state is not None else RevocationState()
        self.guard = FreshnessGuard(max_staleness)
        self.metrics = ConsumerMetrics(service, instance, flavor=engine, registry=registry)
        self.metrics.track_ready(lambda: self.guard.healthy)
        self.who = f"{service}/{instance}"
        self.topic_id: str | None = None
        """Kafka's id of the events topic (set by the engine once known)."""
        self.next: dict[int, int] = {}
        """Next offset to handle per partition (everything before it is handled)."""
        self.ready = threading.Event()
        self.min_interval = WATERMARK_MIN_INTERVAL
        self._shared_view = shared_view
        self._snapshots = snapshots
        self._on_applied = on_applied
        self._publish = publish_receipts
        self._per_event = publish_receipts and per_event_receipts
        self._signer = instance_key
        self._period = watermark_period
        self._raw_of = raw_of
        self._seen = EventIdSet()
        self._outbox: queue.Queue[_Item] = queue.Queue(maxsize=outbox_size)
        self._outbox_thread: threading.Thread | None = None
        self._send: Send | None = None
        self._started_ns = time.time_ns()
        self._advanced: set[int] = set()
        # Offsets dead-lettered since the last watermark, which lists them (refused).
        self._refused: dict[int, list[int]] = {}
        self._refused_count = 0
        self._applied_ns = 0
        self._last_watermark = -float("inf")
        self._wm_key = self.who.encode()
        self._counter_lock = threading.Lock()
        self.records = self.applied = self.heartbeats = self.duplicates = 0
        self.dead_lettered = self.dead_letters_dropped = 0
        self.receipts_sent = self.receipts_dropped = self.watermarks_sent = 0

    # ------------------------------------------------------------ the hot path

    def _warn_capped(self, envelope: Envelope) -> None:
        """An event outlived the maximum credential lifetime: applied capped, say so
        (at most every 10 s: a misconfigured publisher must not flood the log)."""
        now = time.monotonic()
        if now - self._capped_warned_at < 10.0:
            return
        self._capped_warned_at = now
        log.warning(
            "event %s expires after the maximum credential lifetime: applied with its "
            "expiry capped (%d capped so far); check the publisher's max_credential_lifetime",
            envelope.event_id,
            self.state.capped,
            extra=log_extra(service=self.service, instance=self.instance),
        )

    def handle(self, partition: int, offset: int, value: bytes | None, record: Any) -> None:
        """One record of the events topic, in offset order per partition.

        Never raises for a bad record: it is dead-lettered, as is a record whose
        applying raised (a batch record may then be partly applied: harmless, applying
        is a join, and its events are all validly signed).
        """
        received = time.time()
        self.records += 1
        self.next[partition] = offset + 1
        self._advanced.add(partition)
        try:
            envelopes = decode_records(value, self.keys, require_signature=self.require_signature)
        except InvalidEventError as exc:
            self.dead_letter(partition, offset, value, record, exc)
            return
        except Exception as exc:  # a decoder bug must not stop revocations
            self.dead_letter(
                partition, offset, value, record, DecoderCrashError(f"{type(exc).__name__}: {exc}")
            )
            return
        try:
            for envelope in envelopes:
                self._apply(envelope, partition, offset, received)
        except Exception as exc:  # no single record may stop revocations
            self.dead_letter(
                partition,
                offset,
                value,
                record,
                DecoderCrashError(f"applying failed: {type(exc).__name__}: {exc}"),
            )

    def _apply(self, envelope: Envelope, partition: int, offset: int, received: float) -> None:
        self.guard.observe(partition, envelope.published_at_ns / 1e9, received)
        event = envelope.event
        if isinstance(event, Heartbeat):
            self.heartbeats += 1
            return
        if not self._seen.add(envelope.event_id, received):
            self.duplicates += 1
            return
        capped = self.state.capped
        self.state.apply(envelope, received)
        if self.state.capped != capped:
            self._warn_capped(envelope)
        applied_ns = time.time_ns()
        self.applied += 1
        self.metrics.applied(
            event.type,
            (applied_ns - envelope.published_at_ns) / 1e9 if self.ready.is_set() else None,
        )
        if self._per_event:
            self._put(("receipt", (envelope, applied_ns, partition, offset)))
        if self._shared_view is not None:
            self._put(("view", envelope))
        if self._on_applied is not None:
            try:
                self._on_applied(envelope, applied_ns)
            except Exception:  # a listener's bug must not stop revocations
                log.exception("on_applied listener failed", extra=self._log())

    def batch_done(self) -> None:
        """The records handed over since the last call are applied (end of a poll batch)."""
        if self._advanced:
            self._applied_ns = time.time_ns()

    def tick(self, now: float | None = None) -> float:
        """Send a watermark when one is due; the seconds until the next may be due.

        The engine's loop calls it after every poll and bounds its next poll's wait
        by the answer, so a coalesced watermark is never held back by a long poll.
        """
        if not self._publish:
            return self._period
        now = time.monotonic() if now is None else now
        since = now - self._last_watermark
        if self._advanced and self._applied_ns:
            interval = self.min_interval if self.ready.is_set() else REPLAY_WATERMARK_INTERVAL
            if since >= interval:
                self._emit_watermark(now, {p: self.next[p] for p in self._advanced})
                # Nothing is pending now: the next one is due when records come (the
                # loop calls again after each poll) or after a period of silence.
                return self._period
            return interval - since
        if since >= self._period:
            self._emit_watermark(now, dict(self.next))
            return self._period
        return self._period - since

    def _emit_watermark(self, now: float, offsets: dict[int, int]) -> None:
        self._advanced.clear()
        self._last_watermark = now
        if not offsets:
            return
        refused = {p: tuple(o) for p, o in self._refused.items()}
        self._refused.clear()
        self._refused_count = 0
        mark = Watermark(
            service=self.service,
            instance=self.instance,
            engine=self.engine,
            topic=self.topics.events,
            topic_id=self.topic_id,
            offsets=offsets,
            applied_at_ns=self._applied_ns or time.time_ns(),
            started_at_ns=self._started_ns,
            period_s=self._period,
            ready=self.ready.is_set(),
            refused=refused,
        )
        self._put(("watermark", mark))

    def _note_refused(self, partition: int, offset: int) -> None:
        """The next watermark lists this offset as refused (it passes it, not applied)."""
        if not self._publish:
            return
        self._refused.setdefault(partition, []).append(offset)
        self._refused_count += 1
        if self._refused_count >= MAX_REFUSED_PER_WATERMARK:
            # No more in one watermark: send it now; it passes exactly what was handled.
            self._applied_ns = time.time_ns()
            partitions = self._advanced | set(self._refused)
            self._emit_watermark(time.monotonic(), {p: self.next[p] for p in partitions})

    def watermark_now(self) -> None:
        """Send a watermark naming every partition now (ready, stopping)."""
        if self._publish:
            self._emit_watermark(time.monotonic(), dict(self.next))

    # ------------------------------------------------------------ dead letters

    def dead_letter(
        self,
        partition: int,
        offset: int,
        value: bytes | None,
        record: Any,
        exc: InvalidEventError,
        *,
        key: bytes | None = None,
        headers: Headers | None = None,
    ) -> None:
        """Publish ``record`` to the dead-letter topic with the reason headers first."""
        self._note_refused(partition, offset)
        self.dead_lettered += 1
        self.metrics.dead_lettered(exc.reason)
        source = f"{self.topics.events}/{partition}/{offset}"
        log.warning(
            "dead-lettering record %s: %s",
            source,
            exc.reason,
            extra=self._log(reason=exc.reason, source=source),
        )
        if record is not None:
            try:
                key, headers = self._raw_of(record)
            except Exception:  # a header the client cannot even render: keep the bytes
                key, headers = key, None
        out = dead_letter_headers(headers, exc, source, self.who)
        try:
            # A short wait, not a long one: while the dead-letter topic is down a
            # flood of bad records must not stall the applies of good ones.
            self._outbox.put(
                ("send", (self.topics.dead_letter, key, value, out)), timeout=_DLQ_PUT_TIMEOUT
            )
        except queue.Full:
            self.dead_letters_dropped += 1
            log.error(
                "outbox full; dead letter for %s (%s) not published: the record stays in the "
                "events topic at that offset",
                source,
                exc.reason,
                extra=self._log(source=source),
            )

    def unparseable(self, partition: int, offset: int, error: BaseException | str) -> None:
        """Skip (the engine already did) and dead-letter a record the client cannot parse."""
        self.records += 1
        self.next[partition] = offset + 1
        self._advanced.add(partition)
        detail = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.dead_letter(
            partition,
            offset,
            None,
            None,
            UnparseableRecordError(
                f"the Kafka client cannot parse the record at offset {offset} "
                f"(or a batch it belongs to): {detail}"
            ),
            key=f"{self.topics.events}/{partition}/{offset}".encode(),
        )

    # ------------------------------------------------------------ snapshots

    def take_snapshot(self) -> ConsumerSnapshot:
        """Called in the consumer thread between batches: the state holds every event
        before these offsets."""
        return ConsumerSnapshot(
            topic=self.topics.events,
            offsets=dict(self.next),
            state=self.state.snapshot(),
            topic_id=self.topic_id,
        )

    def queue_snapshot(self) -> None:
        if self._snapshots is not None:
            self._put(("snapshot", self.take_snapshot()))

    def load_snapshot(self, end: Mapping[int, int]) -> ConsumerSnapshot | None:
        """The stored snapshot, merged into the state, if it is of the topic as it is now.

        Refused (a full replay follows) when it names another topic id (the topic was
        recreated since), names none while the topic's id is known, or has offsets
        beyond the topic's end.
        """
        if self._snapshots is None:
            return None
        try:
            snapshot = self._snapshots.load(self.topics.events)
        except Exception as exc:
            # A missing or unreadable snapshot only costs a longer replay.
            log.warning("cannot load snapshot, replaying all history: %s", exc, extra=self._log())
            return None
        if snapshot is None or snapshot.topic != self.topics.events:
            return None
        why = snapshot.refusal(self.topic_id, end)
        if why is not None:
            log.warning("snapshot refused, replaying all history: %s", why, extra=self._log())
            return None
        try:
            self.state.merge(snapshot.restore())
        except Exception as exc:
            log.warning("snapshot unusable, replaying all history: %s", exc, extra=self._log())
            return None
        return snapshot

    # ------------------------------------------------------------ outbox

    def start_outbox(self, send: Send) -> None:
        """Start the thread that publishes through ``send`` and writes views and snapshots."""
        self._send = send
        self._outbox_thread = threading.Thread(
            target=self._outbox_loop, name=f"revocast-outbox-{self.who}", daemon=True
        )
        self._outbox_thread.start()

    def stop_outbox(self, timeout: float) -> None:
        """Deliver what is queued, then stop the outbox thread."""
        if self._outbox_thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._outbox.put(("stop", None), timeout=timeout)
        self._outbox_thread.join(timeout)
        self._outbox_thread = None

    def _put(self, item: _Item) -> None:
        try:
            self._outbox.put_nowait(item)
        except queue.Full:
            self.count_dropped()

    def count_dropped(self) -> None:
        with self._counter_lock:
            self.receipts_dropped += 1
        self.metrics.receipt_dropped()

    def _delivered(self, error: BaseException | None) -> None:
        # Runs on the client's I/O thread.
        if error is None:
            with self._counter_lock:
                self.receipts_sent += 1
            return
        self.count_dropped()
        log.warning("receipts-topic record not published: %s", error, extra=self._log())

    def _outbox_loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item[0] == "stop":
                return
            try:
                self._deliver(item)
            except Exception as exc:
                log.warning("outbox %s failed: %s", item[0], exc, extra=self._log())
                if item[0] in ("watermark", "receipt"):
                    self.count_dropped()

    def _deliver(self, item: _Item) -> None:
        kind, payload = item
        send = self._send
        if kind == "watermark" and send is not None:
            value = payload.to_bytes(self._signer)
            send(self.topics.receipts, self._wm_key, value, None, self._delivered)
            self.watermarks_sent += 1
        elif kind == "receipt" and send is not None:
            envelope, applied_ns, partition, offset = payload
            receipt = Receipt(
                service=self.service,
                instance=self.instance,
                flavor=self.engine,
                event_id=envelope.event_id,
                event_type=envelope.event.type,
                published_at_ns=envelope.published_at_ns,
                applied_at_ns=applied_ns,
                partition=partition,
                offset=offset,
            )
            key = str(envelope.event_id).encode()
            send(self.topics.receipts, key, receipt.to_bytes(), None, self._delivered)
        elif kind == "send" and send is not None:
            topic, key, value, headers = payload
            send(topic, key, value, headers, None)
        elif kind == "view" and self._shared_view is not None:
            self._shared_view.apply(payload)
        elif kind == "snapshot" and self._snapshots is not None:
            self._snapshots.save(payload)

    # ------------------------------------------------------------ views

    def stats(self) -> ConsumerStats:
        return ConsumerStats(
            records=self.records,
            applied=self.applied,
            heartbeats=self.heartbeats,
            duplicates=self.duplicates,
            dead_lettered=self.dead_lettered,
            receipts_sent=self.receipts_sent,
            receipts_dropped=self.receipts_dropped,
            dead_letters_dropped=self.dead_letters_dropped,
            watermarks_sent=self.watermarks_sent,
        )

    def _log(self, **fields: Any) -> dict[str, Any]:
        return log_extra(service=self.service, instance=self.instance, **fields)
