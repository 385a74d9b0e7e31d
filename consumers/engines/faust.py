"""The faust engine: a faust-streaming worker fetches, the shared core decides.

:class:`FaustRevocationConsumer` has the public face of
:class:`~consumers.consumer.RevocationConsumer` (``start``/``stop``/``wait_ready``,
``ready``, ``error``, ``freshness()``, ``denial()``, ``positions()``, ``stats()``,
``state``), so ``revocast consume --engine faust`` (``REVOCAST_ENGINE=faust``) runs it
with the same settings, flags and lifecycle lines as every engine. faust's agent hands
each record to :meth:`consumers.core.ConsumerCore.handle`: decoding, verifying,
applying, freshness, dead letters and signed watermarks are the core's code, not a copy.

**Every worker sees every event: one consumer group per worker run, not a GlobalTable.**
The faust app id (faust's consumer group id) is
``revocast-faust.<service>.<instance>.<run>``, unique per process run, so the worker
is alone in its group and is assigned every partition of the events topic. With no
committed offsets it starts from the earliest retained record, i.e. it replays the
history as the other engines do; ready only once every partition reached the end
offset read at assignment. A GlobalTable was rejected because (1) its writes come
from agents that only see the partitions the group gave them, so events would make
a second trip (events topic -> agent -> changelog -> every worker), adding a
commit's worth of latency to every revocation; (2) a table is last-writer-wins per
key, while revocation state must be a join (max of not-before, union of ids), so
concurrent writers could lower a not-before; (3) a table stores one value per key
in RocksDB/memory on top of the state we need anyway. A group per *stable* instance
id was rejected too: on restart faust would resume from the committed offsets with
an empty in-memory state and silently miss everything before them. The cost is one
abandoned group per run, deleted on a clean stop (otherwise Kafka expires it with
its offsets, ``offsets.retention.minutes``).

Guarantees, beyond the core's (:mod:`consumers.core`):

* **Watermarks, batched.** One :class:`schemas.Watermark` per coalescing interval
  (a few ms) while records flow and one per ``watermark_period`` while idle,
  produced through faust's own (lingering) producer from the core's outbox thread;
  no record per event unless ``per_event_receipts`` (the legacy
  ``python -m consumers.faust_app`` wire format, for readers that predate watermarks).
* **No record can stop it.** aiokafka cannot parse a record whose header name is
  not UTF-8: :mod:`consumers.aiokafka_guard` makes it skip that one offset and the
  core dead-letters it as ``unparseable``. Anything else a record does is the core's.
* **Fail closed when the agent dies.** faust does not restart a crashed agent;
  ``error`` is set, ``ready`` turns false and :meth:`denial` refuses privileged checks.
* **Quiet logs.** faust does not configure logging (the process's handler is used, so
  no colour codes when piped); below DEBUG, faust's, mode's and aiokafka's INFO chatter
  is hidden and a *retriable* coordinator lookup failure (normal while a group forms)
  is a DEBUG line, not an ERROR.

* **Warm start as the other engines.** A stored snapshot of the events topic *as it is
  now* (same topic id, offsets within its end) is merged and the partitions are sought
  to its offsets while faust still holds them paused; otherwise the history is replayed.

Cost: beside the older one-receipt-per-event worker on the same events at the same time,
15-23% less process CPU per live event at 100/s and 1,000/s (about 260-290 us per event
at 1,000/s, close to bare aiokafka's ~262 us); the produce path's socket writes went from
5.5% of the busy samples to 0.6%. What remains is faust's fetch path: fetch requests and
its consumer thread's hand-offs to the loop, per fetch rather than per event.

Not guaranteed: watermarks across a rebalance of the run's own group (there is none
while the worker is alone in it); faust's own offset commits to that group are unused.

    consumer = FaustRevocationConsumer("127.0.0.1:9092", TopicNames(), "orders", "orders-1",
                                       KeySet.load("jwks.json")).start()
    consumer.wait_ready(60)
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry

from consumers import aiokafka_guard
from consumers.core import ConsumerCore, CoreViews, Delivered, Headers
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
from schemas.security import KafkaSecurity

__all__ = ["ENGINE", "FaustRevocationConsumer"]

log = logging.getLogger(__name__)

ENGINE: Final = "faust"
_HOUSEKEEPING: Final = 0.25  # seconds between loop beats and ready checks
_POSITION_INTERVAL: Final = 1.0  # seconds between lag (ListOffsets) refreshes
_ASSIGN_GRACE: Final = 60.0  # seconds a group join may take on a loaded host


# ------------------------------------------------------------------ clients


def _credentials(security: KafkaSecurity) -> Any:
    """faust's ``broker_credentials`` for ``security`` (``None``: plaintext)."""
    import faust

    protocol = security.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = security.ssl_context() if security.uses_tls else None
    if not security.uses_sasl:
        return faust.SSLCredentials(context)
    password = security.sasl_password.get_secret_value() if security.sasl_password else None
    return faust.SASLCredentials(
        username=security.sasl_username,
        password=password,
        ssl_context=context,
        mechanism=security.sasl_mechanism,
    )


def _header_list(headers: Any) -> list[tuple[str, bytes]]:
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(k), bytes(v)) for k, v in items]


def _raw_of(message: Any) -> tuple[bytes | None, Headers | None]:
    return message.key, _header_list(message.headers)


@contextlib.contextmanager
def _admin(bootstrap: str, security: KafkaSecurity, timeout: float) -> Iterator[Any]:
    """A kafka-python admin client (topic check, topic id, deleting the run's group)."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError
    from kafka.net.compat import KafkaNetClient

    built: list[Any] = []

    def client(**config: Any) -> Any:
        # Remembered so that a failed bootstrap leaves no I/O thread behind.
        built.append(KafkaNetClient(**config))
        return built[-1]

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="revocast-faust-admin",
            request_timeout_ms=int(timeout * 1000),
            bootstrap_timeout_ms=int(timeout * 1000),
            kafka_client=client,
            **security.to_kafka_python(),
        )
    except KafkaError as exc:
        for made in built:
            with contextlib.suppress(Exception):
                made.close()
        raise BrokerUnavailableError(
            f"no Kafka broker answered at {bootstrap!r} within {timeout:g}s: {exc}"
        ) from None
    try:
        yield admin
    finally:
        with contextlib.suppress(KafkaError):
            admin.close()


def _topic_id(raw: Any) -> str | None:
    """Kafka's spelling of a topic id (base64url), as the other engines report it."""
    if not raw:
        return None
    try:
        value = uuid.UUID(str(raw))
    except ValueError:
        return str(raw)
    if value.int == 0:
        return None
    return base64.urlsafe_b64encode(value.bytes).rstrip(b"=").decode()


# ------------------------------------------------------------------ the consumer


class FaustRevocationConsumer(CoreViews):
    """A faust worker, in its own thread and event loop, feeding the shared core."""

    def __init__(
        self,
        bootstrap_servers: str,
        topics: TopicNames,
        service: str,
        instance: str,
        keys: KeySet | None,
        *,
        require_signature: bool = True,
        state: RevocationState | None = None,
        max_staleness: float = 5.0,
        registry: CollectorRegistry | None = None,
        shared_view: SharedView | None = None,
        snapshots: SnapshotStore | None = None,
        snapshot_interval: float = 30.0,
        on_applied: Callable[[Envelope, int], None] | None = None,
        publish_receipts: bool = True,
        per_event_receipts: bool = False,
        watermarks: bool = True,
        instance_key: SigningKey | None = None,
        watermark_period: float = 1.0,
        outbox_size: int = 100_000,
        topic_timeout: float = 15.0,
        connect_timeout: float = 10.0,
        security: KafkaSecurity | None = None,
        datadir: str | None = None,
        quiet_logs: bool = True,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topics = topics
        self.service = service
        self.instance = instance
        self.keys = keys
        self.engine = ENGINE
        self.core = ConsumerCore(
            topics,
            service,
            instance,
            keys,
            engine=ENGINE,
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
            raw_of=_raw_of,
        )
        self.state: RevocationState = self.core.state
        self.guard: FreshnessGuard = self.core.guard
        self.metrics: ConsumerMetrics = self.core.metrics
        self.group_id = f"revocast-faust.{service}.{instance}.{uuid.uuid4().hex[:12]}"
        self._watermarks = publish_receipts and watermarks
        self._snapshots = snapshots
        self._snapshot_interval = snapshot_interval
        self._topic_timeout = topic_timeout
        self._connect_timeout = connect_timeout
        self._security = security if security is not None else KafkaSecurity()
        self._own_datadir = datadir is None
        self._datadir = datadir
        self._quiet_logs = quiet_logs
        self._who = f"{service}/{instance}"
        self._start_end: dict[int, int] = {}
        self._assigned = threading.Event()
        self._ready = self.core.ready
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._warmed: asyncio.Event  # set once the first assignment (and warm-up) is done
        self._stop_requested = threading.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._soon = False  # a tick is due within the coalescing interval
        self._app: Any = None
        self._warmed_from: ConsumerSnapshot | None = None
        self._skipped: collections.deque[aiokafka_guard.Skipped] = collections.deque(maxlen=10_000)

    @property
    def flavor(self) -> str:
        return ENGINE

    # --------------------------------------------------------------- views

    @property
    def ready(self) -> bool:
        """Caught up with the history seen at assignment, and not stuck since."""
        return self._ready.is_set() and self._error is None and self.guard.problem() is None

    @property
    def error(self) -> BaseException | None:
        """What stopped the worker (a crashed agent, a failed start), if anything."""
        return self._error

    def denial(self, now: float | None = None) -> str | None:
        """Why a privileged check must be denied now: a crashed agent fails closed."""
        if self._error is not None:
            return f"revocation agent crashed: {type(self._error).__name__}: {self._error}"
        return self.guard.denial(now)

    # ----------------------------------------------------------- lifecycle

    def start(self) -> FaustRevocationConsumer:
        """Check the broker and topic, start the worker thread, return once assigned.

        Raises :class:`schemas.BrokerUnavailableError` when no broker answers or no
        assignment comes, :class:`schemas.ConfigError` when the events topic is missing.
        """
        if self._thread is not None:
            raise RuntimeError("consumer already started")
        if self._quiet_logs:
            aiokafka_guard.quiet_logs()
        self._check_topic()
        if self._datadir is None:
            self._datadir = tempfile.mkdtemp(prefix="revocast-faust-")
        self._thread = threading.Thread(
            target=self._thread_main, name=f"revocast-faust-{self._who}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self._connect_timeout + _ASSIGN_GRACE
        while not self._assigned.wait(0.05):
            if self._error is not None or time.monotonic() > deadline:
                self.stop()
                if self._error is not None and isinstance(
                    self._error, BrokerUnavailableError | ConfigError
                ):
                    raise self._error
                raise BrokerUnavailableError(
                    f"faust worker {self.group_id} got no partitions of "
                    f"{self.topics.events!r}: {self._error or 'no assignment in time'}"
                )
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until caught up with the history seen at assignment; ``False`` on timeout.

        Raises what stopped the worker if it stopped.
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

    def stop(self, timeout: float = 15.0) -> None:
        """Last watermark, flush the outbox and producer, stop faust, delete the run's group."""
        self._stop_requested.set()
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(stopping.set)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout + 10)

    def __enter__(self) -> FaustRevocationConsumer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------ starting

    def _check_topic(self) -> None:
        """Fail in one line when the broker is down or the topic is missing (as the
        other engines do); read the topic's id on the way."""
        from kafka.errors import KafkaError

        topic = self.topics.events
        deadline = time.monotonic() + self._topic_timeout
        with _admin(self.bootstrap_servers, self._security, self._connect_timeout) as admin:
            while True:
                try:
                    (described,) = admin.describe_topics([topic])
                    found = not described.get("error_code") and described.get("partitions")
                except (KafkaError, ValueError) as exc:
                    described, found = {}, False
                    problem = str(exc)
                else:
                    problem = "no such topic"
                if found:
                    self.core.topic_id = _topic_id(described.get("topic_id"))
                    return
                if time.monotonic() >= deadline:
                    raise ConfigError(
                        f"events topic {topic!r} does not exist on {self.bootstrap_servers!r} "
                        f"(create it, or check the topic prefix): {problem}"
                    )
                time.sleep(0.2)

    def _build_app(self) -> Any:
        import faust

        app = faust.App(
            self.group_id,
            broker=[f"kafka://{server}" for server in self.bootstrap_servers.split(",")],
            broker_credentials=_credentials(self._security),
            datadir=self._datadir,
            web_enabled=False,
            topic_disable_leader=True,
            topic_allow_declare=False,
            consumer_auto_offset_reset="earliest",
            producer_acks=1,
            producer_linger_ms=2,
            key_serializer="raw",
            value_serializer="raw",
        )
        events = app.topic(
            self.topics.events,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        app.agent(events, name=f"revocast-apply-{self.service}")(self._process)
        app.on_partitions_assigned.connect(self._on_assigned)
        return app

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            if self._error is None:
                self._error = exc
            self.guard.set_not_ready(f"faust worker stopped on error: {exc}")
            log.exception("faust worker failed", extra=self._log())
        finally:
            self._ready.clear()
            self.metrics.set_ready(False)
            self.guard.set_not_ready("the consumer is stopped")
            with contextlib.suppress(Exception):
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()
            aiokafka_guard.remove(self._skipped.append)
            self._delete_group()
            if self._own_datadir and self._datadir:
                shutil.rmtree(self._datadir, ignore_errors=True)

    async def _serve(self) -> None:
        import faust

        class QuietWorker(faust.Worker):
            """No signal handlers (the process's owner has them), no logging setup."""

            def install_signal_handlers(self) -> None:
                pass

        self._stopping = asyncio.Event()
        self._warmed = asyncio.Event()
        if self._stop_requested.is_set():
            return
        self._app = app = self._build_app()
        # Records aiokafka cannot parse are skipped in its fetcher (on faust's consumer
        # thread) and dead-lettered from this loop by the housekeeping task.
        aiokafka_guard.install(self._skipped.append)
        worker = QuietWorker(
            app, loop=asyncio.get_running_loop(), quiet=True, override_logging=False, daemon=False
        )
        worker.spinner = None  # it writes terminal control codes even when piped
        self.core.start_outbox(self._send)
        housekeeping = asyncio.ensure_future(self._housekeeping())
        try:
            await worker.start()
            await self._stopping.wait()
        finally:
            housekeeping.cancel()
            await self._drain(worker)

    async def _drain(self, worker: Any) -> None:
        """Stop: last watermark and snapshot, outbox and producer flushed, faust stopped."""
        loop = asyncio.get_running_loop()
        core = self.core
        if self._watermarks and self._assigned.is_set() and self._error is None:
            core.watermark_now()
        # The outbox thread sends through this loop: wait for it off the loop.
        await loop.run_in_executor(None, core.stop_outbox, 10.0)
        if self._snapshots is not None and self._assigned.is_set() and self._error is None:
            try:
                await loop.run_in_executor(None, self._snapshots.save, core.take_snapshot())
            except Exception as exc:
                log.warning("last snapshot not saved: %s", exc, extra=self._log())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._app.producer.flush(), 10.0)
        try:
            await worker.stop()
        except Exception as exc:
            log.warning("faust worker did not stop cleanly: %s", exc, extra=self._log())

    # ----------------------------------------------------------- callbacks

    async def _on_assigned(
        self, sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any
    ) -> None:
        # faust sends on_partitions_assigned(assigned) as receiver(app, assigned, signal=...)
        assigned = args[0] if args else kwargs.get("assigned", set())
        tps = [tp for tp in assigned if tp.topic == self.topics.events]
        if not tps:
            return
        consumer = self._app.consumer
        core = self.core
        new = [tp for tp in tps if tp.partition not in core.next]
        if new:
            earliest = await consumer.earliest_offsets(*new)
            for tp in new:
                core.next[tp.partition] = max(0, int(earliest.get(tp) or 0))
        if not self._start_end:
            highwaters = await consumer.highwaters(*tps)
            end = {tp.partition: int(highwaters[tp]) for tp in tps}
            await self._warm_up(tps, end)
            self._start_end = end
            behind = sum(max(0, e - core.next[p]) for p, e in self._start_end.items())
            self.guard.set_not_ready(f"replaying {behind} retained records")
        self._warmed.set()
        self.guard.set_partitions(core.next)
        self.metrics.track_staleness([tp.partition for tp in new], self.guard.staleness)
        log.info(
            "revocation consumer assigned %d partitions of %s (engine faust, group %s)",
            len(tps),
            self.topics.events,
            self.group_id,
            extra=self._log(start_offsets=dict(core.next), end_offsets=self._start_end),
        )
        self._assigned.set()
        self._check_ready()

    async def _warm_up(self, tps: list[Any], end: Mapping[int, int]) -> None:
        """Start from the stored snapshot when it is of this topic as it is now (the
        partitions are still paused: faust fetches from these offsets)."""
        if self._snapshots is None:
            return
        loop = asyncio.get_running_loop()
        snapshot = await loop.run_in_executor(None, self.core.load_snapshot, end)
        if snapshot is None:
            return
        for tp in tps:
            offset = snapshot.offsets.get(tp.partition)
            if offset is not None and offset > self.core.next[tp.partition]:
                await self._app.consumer.seek(tp, offset)
                self.core.next[tp.partition] = offset
        self._warmed_from = snapshot

    async def _process(self, stream: Any) -> None:
        core = self.core
        try:
            async for event in stream.events():
                message = event.message
                if not self._warmed.is_set():  # records fetched while assignment is set up
                    await self._warmed.wait()
                if message.offset < core.next.get(message.partition, 0):
                    continue  # fetched before the seek to a snapshot, or again: handled
                core.handle(message.partition, message.offset, message.value, message)
                core.batch_done()
                if not self._ready.is_set():
                    self._check_ready()
                if self._watermarks and not self._soon:
                    # At most one tick per coalescing interval while records flow.
                    self._soon = True
                    self._arm(core.tick())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Records cannot get here (the core dead-letters them): only faust itself.
            # The agent ends here (faust would not restart it): fail closed from now on.
            # Not re-raised: a crashed actor task would abort faust's stop half-way.
            self._error = exc
            self._ready.clear()
            self.guard.set_not_ready(f"apply agent crashed: {exc}")
            self.metrics.set_ready(False)
            log.error(
                "revocation agent crashed: %s: %s", type(exc).__name__, exc, extra=self._log()
            )

    def _check_ready(self) -> None:
        if self._ready.is_set() or not self._start_end:
            return
        nxt = self.core.next
        behind = sum(max(0, e - nxt.get(p, 0)) for p, e in self._start_end.items())
        if behind:
            self.guard.set_not_ready(f"replaying: {behind} retained records to go")
            return
        self.guard.mark_ready()
        self.metrics.set_ready(True)
        self._ready.set()
        if self._watermarks:
            self.core.watermark_now()
        log.info(
            "revocation consumer ready",
            extra=self._log(entries=len(self.state), records=self.core.records),
        )

    # ------------------------------------------------------------ watermarks

    def _arm(self, delay: float) -> None:
        """Have :meth:`_tick` run within ``delay`` seconds (an earlier timer is kept)."""
        loop = self._loop
        if loop is None:
            return
        when = loop.time() + max(0.0005, delay)
        timer = self._timer
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._timer = loop.call_at(when, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._soon = False
        if self._watermarks and not self._stop_requested.is_set():
            self._arm(self.core.tick())

    def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        delivered: Delivered | None,
    ) -> None:
        """The core's producer (called on the outbox thread): hand over to the loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            if delivered is not None:
                delivered(BrokerUnavailableError("the faust worker is stopped"))
            return
        loop.call_soon_threadsafe(self._produce, topic, key, value, headers, delivered)

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        delivered: Delivered | None,
    ) -> None:
        task = asyncio.ensure_future(
            self._app.producer.send(topic, key, value, None, None, list(headers or ()) or None)
        )

        def sent(done: asyncio.Future[Any]) -> None:
            error = done.exception() if not done.cancelled() else asyncio.CancelledError()
            if error is not None:
                if delivered is not None:
                    delivered(error)
                return
            if delivered is not None:
                done.result().add_done_callback(
                    lambda acked: delivered(
                        acked.exception() if not acked.cancelled() else asyncio.CancelledError()
                    )
                )

        task.add_done_callback(sent)

    # ---------------------------------------------------------- housekeeping

    async def _housekeeping(self) -> None:
        """Beat, dead-letter skipped records, refresh lag, save snapshots, tick."""
        next_positions = next_snapshot = time.monotonic()
        next_snapshot += self._snapshot_interval
        while True:
            await asyncio.sleep(_HOUSEKEEPING)
            crash = getattr(self._app, "crash_reason", None)
            if crash is not None and self._error is None:  # faust itself gave up: fail closed
                self._error = crash
                self._ready.clear()
                self.guard.set_not_ready(f"faust worker crashed: {crash}")
                self.metrics.set_ready(False)
            self.guard.beat()
            self._drain_skipped()
            now = time.monotonic()
            if self._assigned.is_set() and now >= next_positions:
                next_positions = now + _POSITION_INTERVAL
                await self._update_lag()
            if self._snapshots is not None and self._ready.is_set() and now >= next_snapshot:
                next_snapshot = now + self._snapshot_interval
                self.core.queue_snapshot()
            if self._watermarks and self._assigned.is_set():
                self._arm(self.core.tick())

    def _drain_skipped(self) -> None:
        while self._skipped:
            topic, partition, offset, error = self._skipped.popleft()
            if topic == self.topics.events:
                self.core.unparseable(partition, offset, error)
        self._check_ready()

    async def _update_lag(self) -> None:
        # End offsets from the broker (ListOffsets), not the last fetch's high watermark.
        nxt = self.core.next
        try:
            tps = [tp for tp in self._app.consumer.assignment() if tp.topic == self.topics.events]
            ends = {
                tp.partition: int(o)
                for tp, o in (await self._app.consumer.highwaters(*tps)).items()
            }
        except Exception:
            ends = {}
        for partition, offset in list(nxt.items()):
            high = ends.get(partition)
            lag = max(0, high - offset) if high is not None else None
            self.guard.set_position(partition, offset, lag)
            if lag is not None:
                self.metrics.set_lag(partition, lag)

    # -------------------------------------------------------------- closing

    def _delete_group(self, attempts: int = 5) -> None:
        """Delete this run's consumer group (best effort; it may take a moment to empty)."""
        from kafka.errors import KafkaError

        outcome: object = "not tried"
        try:
            with _admin(self.bootstrap_servers, self._security, 5.0) as admin:
                for attempt in range(attempts):
                    try:
                        outcome = admin.delete_groups([self.group_id]).get(self.group_id)
                    except KafkaError as exc:
                        outcome = str(exc)
                    if outcome == "OK":
                        return
                    if attempt + 1 < attempts:
                        time.sleep(0.5)
        except BrokerUnavailableError as exc:
            outcome = str(exc)
        log.info("consumer group %s not deleted: %s", self.group_id, outcome, extra=self._log())

    def _log(self, **fields: Any) -> dict[str, Any]:
        return log_extra(service=self.service, instance=self.instance, **fields)
