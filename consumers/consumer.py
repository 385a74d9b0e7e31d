"""Keep a local :class:`RevocationState` in step with the events topic, on any engine.

:class:`RevocationConsumer` drives one engine (:mod:`consumers.engines`:
``kafka-python``, the reference, or ``confluent``, librdkafka) and the shared
core (:mod:`consumers.core`: decode, verify, apply, freshness, dead letters,
watermarks). Guarantees, and why:

* **Every instance sees every event.** Each instance assigns itself *all*
  partitions of the events topic: no consumer group, nothing committed. Replicas
  of one service therefore never split the stream between them. On start an
  instance replays the retained history (or warms up from a
  :class:`~consumers.stores.ConsumerSnapshot` *of the same topic id* and replays
  only what follows its offsets); replay is safe because applying is a join.
  Partitions added later are picked up within :data:`_REFRESH_INTERVAL`.
* **Ready means caught up.** ``ready`` turns true only once the position on
  every partition has reached the end offset read at start, i.e. every
  revocation published before the instance started is in force.
* **Bad records never apply, never stop the consumer, never vanish**: see
  :mod:`consumers.core` (dead letters with the reason headers first) and each
  engine's module (records the client itself cannot parse).
* **A stuck consumer does not look healthy.** Lag is measured against end
  offsets read from the broker (ListOffsets), and the freshness guard turns
  ``ready`` false, the ready gauge 0 and privileged checks to 503 when the loop
  stops turning, polls keep failing, or a position stops advancing while the
  broker holds more (:meth:`consumers.freshness.FreshnessGuard.problem`).
* **Back within about a second of the broker**: reconnect backoff capped at 1 s
  on both engines; poll failures back off to at most 2 s on kafka-python.
* **Watermarks, not per-event receipts** (see :mod:`consumers.core`): one per
  poll batch that advanced, coalesced to a few ms, and one per
  ``watermark_period`` while idle, signed with ``instance_key`` when given.
  Pending watermarks and dead letters are flushed on :meth:`stop`.
  (``per_event_receipts=True`` adds the older one-:class:`schemas.Receipt`-per-event
  records, off by default: the tracker reads watermarks.)

Not guaranteed: exactly-once watermarks across restarts; freshness when the
producer side publishes no heartbeats (the view then looks stale, and
privileged checks are denied, by design).

    with RevocationConsumer("127.0.0.1:9092", TopicNames(), "orders", "orders-1",
                            KeySet.load("jwks.json"), engine="confluent") as consumer:
        consumer.wait_ready(30)
        consumer.state.check(claims, header)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from prometheus_client import CollectorRegistry

from consumers.core import (
    ConsumerCore,
    ConsumerStats,
    CoreViews,
    DecoderCrashError,
    EventIdSet,
    UnparseableRecordError,
    dead_letter_headers,
    require_trusted_keys,
)
from consumers.engines import Engine, make_engine
from consumers.freshness import FreshnessGuard
from consumers.metrics import ConsumerMetrics, log_extra
from consumers.state import RevocationState
from consumers.stores import ConsumerSnapshot, SharedView, SnapshotStore
from schemas import (
    BrokerUnavailableError,
    ConfigError,
    Envelope,
    KeySet,
    SigningKey,
    TopicNames,
)

__all__ = [
    "ConsumerStats",
    "DecoderCrashError",
    "EventIdSet",
    "RevocationConsumer",
    "UnparseableRecordError",
    "dead_letter_headers",
    "require_trusted_keys",
]

log = logging.getLogger(__name__)

_REFRESH_INTERVAL: Final = 30.0  # seconds between checks for new partitions
_POSITION_INTERVAL: Final = 1.0  # seconds between position/lag (ListOffsets) refreshes


class RevocationConsumer(CoreViews):
    """Reads all partitions of the events topic into a :class:`RevocationState`.

    ``keys`` are the trusted event-signing keys; with ``require_signature``
    (default) unsigned events are dead-lettered. ``engine`` picks the Kafka client
    (``"kafka-python"`` or ``"confluent"``). ``state`` lets several readers share a
    state object; ``shared_view`` receives every applied event (e.g. a
    :class:`~consumers.redis_store.RedisRevocationStore`); ``snapshots`` enables
    warm-up from, and periodic saving of, a snapshot. ``instance_key`` signs this
    instance's watermarks. ``kafka_options`` are passed to both clients of the
    engine (security settings and the like, in that client's dialect),
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
        engine: str = "kafka-python",
        require_signature: bool = True,
        state: RevocationState | None = None,
        shared_view: SharedView | None = None,
        snapshots: SnapshotStore | None = None,
        snapshot_interval: float = 30.0,
        max_staleness: float = 5.0,
        flavor: str | None = None,
        registry: CollectorRegistry | None = None,
        on_applied: Callable[[Envelope, int], None] | None = None,
        publish_receipts: bool = True,
        per_event_receipts: bool = False,
        instance_key: SigningKey | None = None,
        watermark_period: float = 1.0,
        outbox_size: int = 100_000,
        topic_timeout: float = 15.0,
        connect_timeout: float = 10.0,
        poll_interval: float = 0.1,
        kafka_options: Mapping[str, Any] | None = None,
        consumer_options: Mapping[str, Any] | None = None,
        producer_options: Mapping[str, Any] | None = None,
    ) -> None:
        require_trusted_keys(keys, require_signature)
        if flavor is not None and flavor != engine:
            raise ConfigError(f"flavor {flavor!r} is the engine's old name: pass engine={flavor!r}")
        self.bootstrap_servers = bootstrap_servers
        self.topics = topics
        self.service = service
        self.instance = instance
        self.keys = keys
        self.require_signature = require_signature
        self._who = f"{service}/{instance}"
        self._engine: Engine = make_engine(
            engine,
            bootstrap_servers=bootstrap_servers,
            topics=topics,
            client_id=f"revocast-{self._who}",
            connect_timeout=connect_timeout,
            kafka_options=kafka_options,
            consumer_options=consumer_options,
            producer_options=producer_options,
        )
        self.engine = engine
        self.core = ConsumerCore(
            topics,
            service,
            instance,
            keys,
            engine=engine,
            require_signature=require_signature,
            state=state,
            max_staleness=max_staleness,
            registry=registry,
            shared_view=shared_view,
            snapshots=snapshots,
            on_applied=on_applied,
            publish_receipts=publish_receipts,
            per_event_receipts=per_event_receipts,
            instance_key=instance_key,
            watermark_period=watermark_period,
            outbox_size=outbox_size,
            raw_of=self._engine.raw_of,
        )
        self.state: RevocationState = self.core.state
        self.guard: FreshnessGuard = self.core.guard
        self.metrics: ConsumerMetrics = self.core.metrics
        self._snapshots = snapshots
        self._snapshot_interval = snapshot_interval
        self._topic_timeout = topic_timeout
        self._poll_s = max(0.001, poll_interval)
        self._start_end: dict[int, int] = {}
        self._stop = threading.Event()
        self._ready = self.core.ready
        self._thread: threading.Thread | None = None
        self._opened = False
        self._error: BaseException | None = None
        self._closed = False
        self._warmed_from: ConsumerSnapshot | None = None

    @property
    def flavor(self) -> str:
        """The engine's name (the older spelling, kept for readers of receipts)."""
        return self.engine

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
        """Stop consuming, save a last snapshot, flush watermarks and dead letters."""
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

    def denial(self, now: float | None = None) -> str | None:
        """Why a privileged check must be denied now (see :meth:`FreshnessGuard.denial`)."""
        if self._error is not None:
            return f"revocation consumer stopped: {self._error}"
        return self.guard.denial(now)

    # ------------------------------------------------------------- opening

    def _open(self) -> None:
        engine = self._engine
        engine.open()
        self._opened = True
        try:
            self._assign_all()
        except BaseException:
            engine.close()
            raise
        self.core.start_outbox(engine.send)

    def _partitions(self, deadline: float) -> set[int]:
        while True:
            found = self._engine.partitions()
            if found:
                return found
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"events topic {self.topics.events!r} does not exist on "
                    f"{self.bootstrap_servers!r} (create it, or check the topic prefix)"
                )
            time.sleep(0.2)

    def _start_offsets(self, partitions: list[int], deadline: float) -> dict[int, int]:
        """End offsets of every partition, retried until ``deadline`` (a topic created a
        moment ago may not have its leaders elected yet)."""
        what = f"cannot read the end offsets of {self.topics.events!r}"
        while True:
            try:
                end = self._engine.end_offsets(partitions, max(1.0, deadline - time.monotonic()))
                problem = f"no answer for partitions {sorted(set(partitions) - set(end))}"
            except Exception as exc:
                end, problem = {}, str(exc)
            if set(end) == set(partitions):
                return end
            if time.monotonic() >= deadline:
                raise BrokerUnavailableError(f"{what}: {problem}")
            time.sleep(0.2)

    def _assign_all(self) -> None:
        engine, core = self._engine, self.core
        partitions = sorted(self._partitions(time.monotonic() + self._topic_timeout))
        core.topic_id = engine.topic_id()
        end = self._start_offsets(partitions, time.monotonic() + self._topic_timeout)
        snapshot = core.load_snapshot(end)
        self._warmed_from = snapshot
        offsets = {p: (snapshot.offsets.get(p) if snapshot else None) for p in partitions}
        core.next.update(engine.assign(offsets))
        self._start_end = dict(end)
        self.guard.set_partitions(self._start_end)
        behind = sum(max(0, e - core.next[p]) for p, e in self._start_end.items())
        self.guard.set_not_ready(f"replaying {behind} retained records")
        self.metrics.track_staleness(self._start_end, self.guard.staleness)
        log.info(
            "revocation consumer assigned %d partitions of %s (engine %s, topic id %s)",
            len(partitions),
            self.topics.events,
            engine.name,
            core.topic_id,
            extra=self._log(
                start_offsets=core.next, end_offsets=self._start_end, snapshot=snapshot is not None
            ),
        )
        self._check_ready()

    # ---------------------------------------------------------------- loop

    def _run_loop(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            self._error = exc
            self.guard.set_not_ready(f"consumer stopped on error: {exc}")
            log.exception("revocation consumer failed", extra=self._log())
        finally:
            self._close()

    def _loop(self) -> None:
        engine, core, guard = self._engine, self.core, self.guard
        next_positions = time.monotonic()
        next_refresh = time.monotonic() + _REFRESH_INTERVAL
        next_snapshot = time.monotonic() + self._snapshot_interval
        failures = 0
        wait = self._poll_s
        while not self._stop.is_set():
            guard.beat()
            try:
                count = engine.poll(wait, core)
            except Exception as exc:
                failures += 1
                guard.poll_failed(f"{type(exc).__name__}: {exc}")
                log.warning(
                    "poll failed (%d in a row): %s: %s",
                    failures,
                    type(exc).__name__,
                    exc,
                    extra=self._log(),
                )
                self._stop.wait(min(engine.failure_backoff_max, 0.1 * 2**failures))
                continue
            if failures:
                failures = 0
                guard.poll_ok()
            if count:
                core.batch_done()
            now = time.monotonic()
            if not self._ready.is_set() and (not count or now >= next_positions):
                self._check_ready()
            if now >= next_positions:
                next_positions = now + _POSITION_INTERVAL
                self._update_lag()
            if now >= next_refresh:
                next_refresh = now + _REFRESH_INTERVAL
                self._refresh_partitions()
            if self._snapshots is not None and now >= next_snapshot:
                next_snapshot = now + self._snapshot_interval
                core.queue_snapshot()
            wait = min(self._poll_s, max(0.0005, core.tick(now)))

    def _check_ready(self) -> None:
        if self._ready.is_set():
            return
        nxt = self.core.next
        behind = 0
        for partition, end in self._start_end.items():
            if nxt.get(partition, 0) >= end:
                continue
            # Records the client skips (transaction markers, compacted or deleted
            # records) move its position past the last record handed over.
            position = self._engine.position(partition)
            if position is not None and position > nxt.get(partition, 0):
                nxt[partition] = position
            behind += max(0, end - nxt.get(partition, 0))
        if behind:
            self.guard.set_not_ready(f"replaying: {behind} retained records to go")
            return
        self.guard.mark_ready()
        self.metrics.set_ready(True)
        self._ready.set()
        self.core.watermark_now()
        log.info(
            "revocation consumer ready",
            extra=self._log(entries=len(self.state), records=self.core.records),
        )

    def _update_lag(self) -> None:
        # End offsets from the broker (ListOffsets), not the high watermark of the
        # last fetch: a consumer that stopped fetching would read lag 0 forever.
        nxt = self.core.next
        try:
            ends = self._engine.end_offsets(list(nxt), 1.0)
        except Exception:
            ends = {}
        for partition, offset in list(nxt.items()):
            high = ends.get(partition)
            lag = max(0, high - offset) if high is not None else None
            self.guard.set_position(partition, offset, lag)
            if lag is not None:
                self.metrics.set_lag(partition, lag)

    def _refresh_partitions(self) -> None:
        """Pick up partitions added to the topic since start (read from their beginning)."""
        try:
            found = self._engine.partitions()
        except Exception:
            return
        new = sorted(set(found) - set(self.core.next))
        if not new:
            return
        self.core.next.update(self._engine.add_partitions(dict.fromkeys(new)))
        self.guard.set_partitions(self.core.next)
        self.metrics.track_staleness(new, self.guard.staleness)
        log.info(
            "new partitions of %s assigned: %s", self.topics.events, new, extra=self._log()
        )

    # ------------------------------------------------------------- closing

    def _close(self, timeout: float = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready.clear()
        self.metrics.set_ready(False)
        self.guard.set_not_ready("the consumer is stopped")
        if self._opened and self._error is None:
            self.core.watermark_now()
        self.core.stop_outbox(timeout)
        if self._snapshots is not None and self._opened and self._error is None:
            try:
                self._snapshots.save(self.core.take_snapshot())
            except Exception as exc:
                log.warning("last snapshot not saved: %s", exc, extra=self._log())
        if self._opened:
            try:
                self._engine.flush(timeout)
            except Exception as exc:
                log.warning("watermarks not all flushed on stop: %s", exc, extra=self._log())
        self._engine.close()

    def _log(self, **fields: Any) -> dict[str, Any]:
        return log_extra(service=self.service, instance=self.instance, **fields)
