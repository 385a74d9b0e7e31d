"""The kafka-python engine: the reference, and what the publisher side uses too.

Guarantees beyond the shared core (:mod:`consumers.core`):

* **A record kafka-python cannot parse does not halt it.** An invalid UTF-8
  header name or a corrupt batch makes kafka-python raise inside ``poll()`` and
  keep the dead parsed-records iterator as its next in line, so it would spin on
  it forever on every partition. :meth:`KafkaPythonEngine.skip_unparseable`
  drops that iterator, seeks one past the record (its ``next_fetch_offset``:
  every record before it was handed out) and dead-letters it by coordinates (the
  client never hands over its bytes; ``kcat -C -t TOPIC -p P -o O -c 1`` shows them).
* **Back within about a second of the broker.** Reconnect backoff is capped at
  1 s (kafka-python's default cap is 30 s).
* **Nothing leaks when the cluster is unreachable at start.** kafka-python 3
  opens sockets and a network thread inside the client constructors; when
  bootstrapping fails the half-built object is never returned, so the clients
  are built through a factory that can close them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.net.compat import KafkaNetClient

from consumers.engines import topic_id_text
from schemas import BrokerUnavailableError, TopicNames

if TYPE_CHECKING:
    from consumers.core import ConsumerCore, Delivered, Headers

__all__ = ["KafkaPythonEngine"]

# Reconnect quickly after a broker restart: kafka-python's default cap is 30 s.
_RECONNECT: Final = {"reconnect_backoff_ms": 50, "reconnect_backoff_max_ms": 1000}


class _ClientTracker:
    """A ``kafka_client`` factory that remembers what it built (see the module docstring)."""

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


def _raw_of(record: Any) -> tuple[bytes | None, Headers | None]:
    return record.key, record.headers


class KafkaPythonEngine:
    """kafka-python ``KafkaConsumer`` (assign, no group) plus a ``KafkaProducer``."""

    name = "kafka-python"
    failure_backoff_max = 2.0

    def raw_of(self, record: Any) -> tuple[bytes | None, Headers | None]:
        return _raw_of(record)

    def __init__(
        self,
        *,
        bootstrap_servers: str | Sequence[str],
        topics: TopicNames,
        client_id: str,
        connect_timeout: float,
        kafka_options: Mapping[str, Any],
        consumer_options: Mapping[str, Any],
        producer_options: Mapping[str, Any],
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topics.events
        self._client_id = client_id
        self._connect_timeout = connect_timeout
        self._kafka_options = dict(kafka_options)
        self._consumer_options = dict(consumer_options)
        self._producer_options = dict(producer_options)
        self._consumer: KafkaConsumer | None = None
        self._producer: KafkaProducer | None = None

    @property
    def consumer(self) -> KafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the engine is not open")
        return self._consumer

    def open(self) -> None:
        options: dict[str, Any] = {
            **_RECONNECT,
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self._client_id,
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
            # Always: besides watermarks, the producer carries dead letters.
            self._producer = KafkaProducer(
                **{
                    "acks": 1,
                    "linger_ms": 2,
                    "max_block_ms": 10_000,
                    **options,
                    **self._producer_options,
                }
            )
        except KafkaError as exc:
            # kafka-python 3 reports an unreachable cluster as KafkaTimeoutError
            # ("Unable to bootstrap"); 2.x raised NoBrokersAvailable.
            self.close()
            tracker.close_all()
            raise BrokerUnavailableError(
                f"no Kafka broker answered at {self.bootstrap_servers!r} within "
                f"{self._connect_timeout:g}s ({self._client_id}): {exc}"
            ) from None

    def partitions(self) -> set[int]:
        try:
            return set(self.consumer.partitions_for_topic(self.topic) or ())
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot read metadata of {self.topic!r}: {exc}") from None

    def topic_id(self) -> str | None:
        cluster = getattr(getattr(self.consumer, "_client", None), "cluster", None)
        lookup = getattr(cluster, "topic_id", None)
        return topic_id_text(lookup(self.topic)) if callable(lookup) else None

    def _tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self.topic, partition)

    def assign(self, offsets: Mapping[int, int | None]) -> dict[int, int]:
        consumer = self.consumer
        tps = [self._tp(p) for p in sorted(offsets)]
        try:
            consumer.assign(tps)
            return self._seek(offsets)
        except KafkaError as exc:
            what = f"cannot assign {self.topic!r} partitions"
            raise BrokerUnavailableError(f"{what}: {exc}") from None

    def add_partitions(self, offsets: Mapping[int, int | None]) -> dict[int, int]:
        consumer = self.consumer
        kept = {tp.partition: consumer.position(tp) for tp in consumer.assignment()}
        consumer.assign([self._tp(p) for p in sorted({*kept, *offsets})])
        self._seek(kept)
        return self._seek(offsets)

    def _seek(self, offsets: Mapping[int, int | None]) -> dict[int, int]:
        consumer = self.consumer
        for partition, offset in offsets.items():
            if offset is None:
                consumer.seek_to_beginning(self._tp(partition))
            else:
                consumer.seek(self._tp(partition), offset)
        timeout_ms = int(self._connect_timeout * 1000)
        return {p: int(consumer.position(self._tp(p), timeout_ms=timeout_ms) or 0) for p in offsets}

    def end_offsets(self, partitions: Sequence[int], timeout: float) -> dict[int, int]:
        tps = [self._tp(p) for p in partitions]
        ends = self.consumer.end_offsets(tps, timeout_ms=int(timeout * 1000))
        return {tp.partition: int(o) for tp, o in ends.items() if o is not None}

    def position(self, partition: int) -> int | None:
        try:
            found = self.consumer.position(self._tp(partition))
        except KafkaError:
            return None
        return None if found is None else int(found)

    def poll(self, timeout: float, core: ConsumerCore) -> int:
        try:
            batches = self.consumer.poll(timeout_ms=max(1, int(timeout * 1000)))
        except Exception as exc:
            # Anything, not only KafkaError: a record kafka-python cannot parse
            # raises UnicodeDecodeError or CorruptRecordError from inside poll().
            if self.skip_unparseable(exc, core):
                return 1
            raise
        n = 0
        handle = core.handle
        for records in batches.values():
            for record in records:
                handle(record.partition, record.offset, record.value, record)
            n += len(records)
        return n

    def skip_unparseable(self, exc: Exception, core: ConsumerCore) -> bool:
        """Skip the record kafka-python failed to parse; ``False`` if it cannot be located."""
        fetcher = getattr(self._consumer, "_fetcher", None)
        part = getattr(fetcher, "_next_partition_records", None)
        if part is None or not hasattr(part, "next_fetch_offset"):
            return False
        tp = part.topic_partition
        offset = int(part.next_fetch_offset)
        with contextlib.suppress(Exception):
            part.drain()
        fetcher._next_partition_records = None  # type: ignore[union-attr]
        self.consumer.seek(tp, offset + 1)
        core.unparseable(tp.partition, offset, exc)
        return True

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        delivered: Delivered | None,
    ) -> None:
        if self._producer is None:
            return
        future = self._producer.send(
            topic, key=key, value=value, headers=list(headers) if headers else None
        )
        if delivered is not None:
            future.add_callback(lambda _metadata: delivered(None))
            future.add_errback(delivered)

    def flush(self, timeout: float) -> None:
        if self._producer is not None:
            self._producer.flush(timeout=timeout)

    def pause(self) -> None:
        self.consumer.pause(*self.consumer.assignment())

    def resume(self) -> None:
        self.consumer.resume(*self.consumer.paused())

    def close(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(KafkaError):
                self._consumer.close(autocommit=False, timeout_ms=2000)
        if self._producer is not None:
            with contextlib.suppress(KafkaError):
                self._producer.close(timeout=5)
