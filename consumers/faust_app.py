"""The same consumer as a faust-streaming worker (flavor ``"faust"``).

Run one worker per process::

    python -m consumers.faust_app --service orders --bootstrap 127.0.0.1:9092 \\
        --jwks jwks.json [--instance orders-1] [--topic-prefix t-abc]

or build it in code: ``make_worker(...)`` returns a :class:`FaustRevocationWorker`
whose ``.app`` is the :class:`faust.App`; ``worker.run()`` blocks until SIGINT or
SIGTERM.

**Every worker sees every event: one consumer group per worker, not a GlobalTable.**
Each worker's faust app id (which faust uses as the consumer group id) is
``revocast-faust.<service>.<instance>.<run>``, unique per process run, so the
worker is alone in its group and is assigned every partition of the events
topic. With no committed offsets it starts from the earliest retained record
(``consumer_auto_offset_reset="earliest"``), i.e. it replays history exactly as
the kafka-python :class:`~consumers.consumer.RevocationConsumer` does, and
applies each event to an in-process :class:`RevocationState`.

A GlobalTable was rejected because (1) its writes come from agents that only
see the partitions the group gave them, so events would make a second trip
(events topic -> agent -> changelog -> every worker), adding a commit's worth
of latency to every revocation; (2) a table is last-writer-wins per key, while
revocation state must be a join (max of not-before, union of ids), so concurrent
writers could lower a not-before; (3) a table stores one value per key in
RocksDB/memory on top of the state we need anyway. A group per *stable*
instance id was rejected too: on restart faust would resume from the committed
offsets with an empty in-memory state and silently miss everything before them.
The cost of per-run groups is one abandoned group per run, which the worker
deletes on a clean shutdown (otherwise Kafka expires it with its offsets,
``offsets.retention.minutes``).

Guarantees as for the kafka-python consumer: ready only after the high
watermarks read at assignment; bad records are dead-lettered with their
original bytes and the ``revocast.dlq.*`` headers and never applied; one
:class:`schemas.Receipt` per applied revocation (flavor ``"faust"``), sent
through faust's buffered producer so receipts never wait for broker acks.

faust-streaming 0.15.3 on aiokafka 0.14 against Kafka 4.3.1 works as shipped
(checked by the integration test): only ``topic_disable_leader=True`` (no
``-__assignor-__leader`` topic per run) and ``web_enabled=False`` are set.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from consumers import aiokafka_guard
from consumers.consumer import (
    DecoderCrashError,
    EventIdSet,
    UnparseableRecordError,
    dead_letter_headers,
    require_trusted_keys,
)
from consumers.freshness import FreshnessGuard, FreshnessReport
from consumers.metrics import ConsumerMetrics, log_extra
from consumers.state import RevocationState
from schemas import (
    ConfigError,
    Envelope,
    Heartbeat,
    InvalidEventError,
    KeySet,
    Receipt,
    TopicNames,
    decode,
)

__all__ = ["FaustRevocationWorker", "main", "make_worker"]

log = logging.getLogger(__name__)

FLAVOR = "faust"


class FaustRevocationWorker:
    """A faust app applying every event of the events topic to its own state."""

    def __init__(
        self,
        *,
        service: str,
        instance: str,
        bootstrap_servers: str,
        topics: TopicNames,
        keys: KeySet | None,
        require_signature: bool = True,
        max_staleness: float = 5.0,
        state: RevocationState | None = None,
        registry: CollectorRegistry | None = None,
        datadir: str | None = None,
        on_applied: Callable[[Envelope, int], None] | None = None,
    ) -> None:
        require_trusted_keys(keys, require_signature)
        self.service = service
        self.instance = instance
        self.topics = topics
        self.keys = keys
        self.require_signature = require_signature
        self.state = state if state is not None else RevocationState()
        self.guard = FreshnessGuard(max_staleness)
        self.metrics = ConsumerMetrics(service, instance, flavor=FLAVOR, registry=registry)
        self.on_applied = on_applied
        self.group_id = f"revocast-faust.{service}.{instance}.{uuid.uuid4().hex[:12]}"
        self._own_datadir = datadir is None
        self.datadir = datadir or tempfile.mkdtemp(prefix="revocast-faust-")
        self._seen = EventIdSet()
        self._start_end: dict[int, int] = {}
        self._next: dict[int, int] = {}
        self._ready = False
        self._error: BaseException | None = None
        self._who = f"{service}/{instance}"
        self.bootstrap_servers = bootstrap_servers
        self.app = faust.App(
            self.group_id,
            broker=[f"kafka://{server}" for server in bootstrap_servers.split(",")],
            datadir=self.datadir,
            web_enabled=False,
            topic_disable_leader=True,
            topic_allow_declare=False,
            consumer_auto_offset_reset="earliest",
            producer_acks=1,
            producer_linger_ms=2,
            key_serializer="raw",
            value_serializer="raw",
        )
        self._events, self._receipts, self._dlq = (
            self.app.topic(
                name,
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
            )
            for name in (topics.events, topics.receipts, topics.dead_letter)
        )
        self.app.agent(self._events, name=f"revocast-apply-{service}")(self._process)
        self.app.on_partitions_assigned.connect(self._on_assigned)
        # Records aiokafka cannot parse are skipped in its fetcher (on faust's
        # consumer thread) and dead-lettered from the app's loop.
        self._skipped: collections.deque[aiokafka_guard.Skipped] = collections.deque(maxlen=10_000)
        aiokafka_guard.install(self._skipped.append)
        self.app.timer(0.2, name=f"revocast-unparseable-{service}")(self._drain_skipped)

    # ---------------------------------------------------------------- views

    @property
    def ready(self) -> bool:
        return self._ready

    def freshness(self, now: float | None = None) -> FreshnessReport:
        return self.guard.report(now)

    @property
    def error(self) -> BaseException | None:
        """What crashed the apply agent, if it crashed (faust does not restart it)."""
        return self._error

    def denial(self, now: float | None = None) -> str | None:
        if self._error is not None:
            return f"revocation agent crashed: {type(self._error).__name__}: {self._error}"
        return self.guard.denial(now)

    # ------------------------------------------------------------ callbacks

    async def _on_assigned(
        self, sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any
    ) -> None:
        # faust sends on_partitions_assigned(assigned) as receiver(app, assigned, signal=...)
        assigned = args[0] if args else kwargs.get("assigned", set())
        tps = [tp for tp in assigned if tp.topic == self.topics.events]
        if not tps:
            return
        highwaters = await self.app.consumer.highwaters(*tps)
        self._start_end = {tp.partition: int(highwaters[tp]) for tp in tps}
        for partition in self._start_end:
            self._next.setdefault(partition, 0)
        self.guard.set_partitions(self._start_end)
        self.metrics.track_staleness(self._start_end, self.guard.staleness)
        log.info(
            "faust worker assigned %d partitions of %s",
            len(tps),
            self.topics.events,
            extra=log_extra(service=self.service, instance=self.instance, group=self.group_id),
        )
        self._check_ready()

    def _check_ready(self) -> None:
        if self._ready or not self._start_end:
            return
        behind = sum(max(0, e - self._next.get(p, 0)) for p, e in self._start_end.items())
        if behind:
            self.guard.set_not_ready(f"replaying: {behind} retained records to go")
            return
        self._ready = True
        self.guard.mark_ready()
        self.metrics.set_ready(True)
        log.info(
            "faust worker ready",
            extra=log_extra(service=self.service, instance=self.instance, entries=len(self.state)),
        )

    async def _drain_skipped(self) -> None:
        while self._skipped:
            topic, partition, offset, error = self._skipped.popleft()
            if topic != self.topics.events:
                continue
            self._next[partition] = max(self._next.get(partition, 0), offset + 1)
            exc = UnparseableRecordError(
                f"the Kafka client cannot parse the record at offset {offset} "
                f"(or a batch it belongs to): {error}"
            )
            source = f"{topic}/{partition}/{offset}"
            self.metrics.dead_lettered(exc.reason)
            log.warning(
                "dead-lettering record %s: %s",
                source,
                exc.reason,
                extra=log_extra(service=self.service, instance=self.instance, source=source),
            )
            await self._dlq.send(
                key=source.encode(), value=None,
                headers=dead_letter_headers([], exc, source, self._who),
            )  # fmt: skip
        self._check_ready()

    async def _process(self, stream: Any) -> None:
        try:
            async for event in stream.events():
                await self._handle(event.message)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # Only an infrastructure failure gets here (records cannot: see _handle).
            self._error = exc
            self.guard.set_not_ready(f"apply agent crashed: {exc}")
            self.metrics.set_ready(False)
            raise

    async def _handle(self, message: Any) -> None:
        received = time.time()
        partition: int = message.partition
        self._next[partition] = message.offset + 1
        try:
            envelope = decode(message.value, self.keys, require_signature=self.require_signature)
        except InvalidEventError as exc:
            await self._dead_letter(message, exc)
        except Exception as exc:  # a decoder bug must not stop revocations
            await self._dead_letter(message, DecoderCrashError(f"{type(exc).__name__}: {exc}"))
        else:
            try:
                await self._apply(envelope, message, received)
            except Exception as exc:  # no single record may stop revocations
                await self._dead_letter(
                    message, DecoderCrashError(f"applying failed: {type(exc).__name__}: {exc}")
                )
        self._check_ready()

    async def _apply(self, envelope: Envelope, message: Any, received: float) -> None:
        self.guard.observe(message.partition, envelope.published_at_ns / 1e9, received)
        event = envelope.event
        if isinstance(event, Heartbeat) or not self._seen.add(envelope.event_id, received):
            return
        self.state.apply(envelope, received)
        applied_ns = time.time_ns()
        self.metrics.applied(
            event.type, (applied_ns - envelope.published_at_ns) / 1e9 if self._ready else None
        )
        receipt = Receipt(
            service=self.service,
            instance=self.instance,
            flavor=FLAVOR,
            event_id=envelope.event_id,
            event_type=event.type,
            published_at_ns=envelope.published_at_ns,
            applied_at_ns=applied_ns,
            partition=message.partition,
            offset=message.offset,
        )
        await self._receipts.send(key=str(envelope.event_id).encode(), value=receipt.to_bytes())
        if self.on_applied is not None:
            try:
                self.on_applied(envelope, applied_ns)
            except Exception:  # a listener's bug must not stop revocations
                log.exception("on_applied listener failed")

    async def _dead_letter(self, message: Any, exc: InvalidEventError) -> None:
        self.metrics.dead_lettered(exc.reason)
        source = f"{message.topic}/{message.partition}/{message.offset}"
        log.warning(
            "dead-lettering record %s: %s",
            source,
            exc.reason,
            extra=log_extra(
                service=self.service, instance=self.instance, reason=exc.reason, source=source
            ),
        )
        headers = dead_letter_headers(_header_list(message.headers), exc, source, self._who)
        await self._dlq.send(key=message.key, value=message.value, headers=headers)

    # -------------------------------------------------------------- running

    def run(self, loglevel: str = "warning") -> int:
        """Run the worker in this thread until SIGINT/SIGTERM; returns an exit code."""
        worker = faust.Worker(self.app, loglevel=loglevel, quiet=True)
        code = 0
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
        finally:
            self.close()
        return code

    def close(self) -> None:
        """Delete this run's consumer group (best effort) and the scratch datadir."""
        try:
            _delete_group(self.bootstrap_servers, self.group_id)
        finally:
            if self._own_datadir:
                shutil.rmtree(self.datadir, ignore_errors=True)


def _header_list(headers: Any) -> list[tuple[str, bytes]]:
    if not headers:
        return []
    if isinstance(headers, dict):
        return [(str(k), bytes(v)) for k, v in headers.items()]
    return [(str(k), bytes(v)) for k, v in headers]


def _delete_group(bootstrap: str, group_id: str, attempts: int = 5) -> None:
    """Delete this run's consumer group; it may take a moment to become empty."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    except KafkaError as exc:
        log.info("consumer group %s not deleted: %s", group_id, exc)
        return
    try:
        for attempt in range(attempts):
            try:
                outcome = admin.delete_groups([group_id]).get(group_id)
            except KafkaError as exc:
                outcome = str(exc)
            if outcome == "OK":
                return
            if attempt + 1 < attempts:
                time.sleep(0.5)
        log.info("consumer group %s not deleted: %s", group_id, outcome)
    finally:
        with contextlib.suppress(KafkaError):
            admin.close()


def make_worker(
    service: str,
    bootstrap_servers: str,
    *,
    topics: TopicNames | None = None,
    keys: KeySet | None = None,
    instance: str | None = None,
    require_signature: bool = True,
    max_staleness: float = 5.0,
    registry: CollectorRegistry | None = None,
) -> FaustRevocationWorker:
    """A worker for ``service`` (``instance`` defaults to ``<hostname>-<pid>``)."""
    return FaustRevocationWorker(
        service=service,
        instance=instance or f"{socket.gethostname()}-{os.getpid()}",
        bootstrap_servers=bootstrap_servers,
        topics=topics or TopicNames(),
        keys=keys,
        require_signature=require_signature,
        max_staleness=max_staleness,
        registry=registry,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m consumers.faust_app",
        description="Apply revocast events to an in-process view with a faust worker.",
    )
    parser.add_argument("--service", required=True, help="service name (receipts, metrics)")
    parser.add_argument("--instance", default=None, help="instance id (default host-pid)")
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument("--topic-prefix", default=None, help="use TopicNames.prefixed(PREFIX)")
    parser.add_argument("--jwks", default=None, help="JWKS file or URL of event-signing keys")
    parser.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="accept unsigned events (development only)",
    )
    parser.add_argument("--max-staleness", type=float, default=5.0)
    parser.add_argument(
        "--dump-state",
        default=None,
        metavar="PATH",
        help="write the state snapshot as JSON to PATH on shutdown",
    )
    parser.add_argument("--loglevel", default="warning")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        keys = KeySet.load(args.jwks) if args.jwks else None
        worker = make_worker(
            args.service,
            args.bootstrap,
            topics=TopicNames.prefixed(args.topic_prefix) if args.topic_prefix else TopicNames(),
            keys=keys,
            instance=args.instance,
            require_signature=not args.allow_unsigned,
            max_staleness=args.max_staleness,
        )
    except ConfigError as exc:
        print(f"revocast faust worker: {exc}", file=sys.stderr)
        return 2
    code = worker.run(args.loglevel)
    if args.dump_state:
        path = Path(args.dump_state)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(worker.state.snapshot()))
        tmp.replace(path)
    return code


if __name__ == "__main__":
    asyncio.set_event_loop(asyncio.new_event_loop())
    sys.exit(main())
