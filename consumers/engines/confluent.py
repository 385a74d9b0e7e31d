"""The confluent-kafka engine: librdkafka fetches and produces, Python only applies.

Why: at live rates a pure-Python client's cost is per fetch round trip, not per
event (about 0.5 ms of CPU per record at 1,000 records/s for kafka-python 3);
librdkafka fetches in its own C threads and hands over whole batches, so the
process spends its CPU on verifying and applying. Install with
``pip install 'revocast[fast]'``.

Same guarantees as every engine (:mod:`consumers.core`), and in particular:

* **Every partition, nothing committed.** ``assign()`` with explicit offsets, a
  ``group.id`` that is never joined (librdkafka requires one), auto-commit and
  offset store off.
* **No record can stop it.** librdkafka parses header names as bytes, so a
  record whose header name is not UTF-8 arrives like any other and is
  dead-lettered (with its raw value; the unreadable headers are left out) when
  it is not a valid event. A record librdkafka reports as an error at an offset
  (a corrupt message) is dead-lettered as ``unparseable`` by its coordinates.
* **Failing polls are visible.** Errors librdkafka reports through ``error_cb``
  (all brokers down, transport failures) make the poll that saw them fail when
  it delivered nothing, so the freshness guard reads "polls have failed".
* **Back within about a second of the broker.** ``reconnect.backoff.max.ms`` is
  1 s; librdkafka reconnects on its own, the driver does not add a backoff.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # OffsetSpec: not in __all__
    AdminClient,
    OffsetSpec,
)

from consumers.engines import topic_id_text
from schemas import BrokerUnavailableError, TopicNames

if TYPE_CHECKING:
    from consumers.core import ConsumerCore, Delivered, Headers

__all__ = ["ConfluentEngine"]

_librdkafka_log = logging.getLogger("consumers.engines.librdkafka")
_RECONNECT: Final = {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 1000}
_BATCH: Final = 1000
"""Most records taken from librdkafka's queue per ``consume()`` call."""


def _raw_of(message: Any) -> tuple[bytes | None, Headers | None]:
    # headers() raises (SystemError) when a header name is not UTF-8: the core
    # then dead-letters the record without its headers.
    return message.key(), message.headers()


def _servers(bootstrap: str | Sequence[str]) -> str:
    return bootstrap if isinstance(bootstrap, str) else ",".join(bootstrap)


class ConfluentEngine:
    """confluent-kafka ``Consumer`` (assign, no group joined) plus a ``Producer``."""

    name = "confluent"
    failure_backoff_max = 0.0

    def raw_of(self, message: Any) -> tuple[bytes | None, Headers | None]:
        return _raw_of(message)

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
        self.bootstrap_servers = _servers(bootstrap_servers)
        self.topic = topics.events
        self._connect_timeout = connect_timeout
        self._base: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": client_id,
            "logger": _librdkafka_log,
            **_RECONNECT,
            **kafka_options,
        }
        self._consumer_options = dict(consumer_options)
        self._producer_options = dict(producer_options)
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._admin: AdminClient | None = None
        self._errors: list[str] = []

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError("the engine is not open")
        return self._consumer

    def _on_error(self, error: KafkaError) -> None:
        # Called from inside poll()/consume() on the calling thread.
        self._errors.append(f"{error.name()}: {error.str()}")

    def open(self) -> None:
        self._consumer = Consumer(
            {
                **self._base,
                # Required by librdkafka, never joined: assign() only, nothing committed.
                "group.id": f"revocast-unjoined-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
                "allow.auto.create.topics": False,
                "error_cb": self._on_error,
                **self._consumer_options,
            }
        )
        self._producer = Producer(
            {
                **self._base,
                "acks": 1,
                "linger.ms": 2,
                "error_cb": self._on_error,
                **self._producer_options,
            }
        )
        self._admin = AdminClient(self._base)
        try:
            self.consumer.list_topics(timeout=self._connect_timeout)
        except KafkaException as exc:
            self.close()
            raise BrokerUnavailableError(
                f"no Kafka broker answered at {self.bootstrap_servers!r} within "
                f"{self._connect_timeout:g}s: {exc}"
            ) from None
        self._errors.clear()

    def partitions(self) -> set[int]:
        try:
            meta = self.consumer.list_topics(self.topic, timeout=self._connect_timeout)
        except KafkaException as exc:
            raise BrokerUnavailableError(f"cannot read metadata of {self.topic!r}: {exc}") from None
        found = meta.topics.get(self.topic)
        if found is None or found.error is not None:
            return set()
        return set(found.partitions)

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            raise RuntimeError("the engine is not open")
        return self._admin

    def topic_id(self) -> str | None:
        try:
            futures = self.admin.describe_topics(TopicCollection([self.topic]))
            description = futures[self.topic].result(timeout=self._connect_timeout)
        except Exception:
            return None
        return topic_id_text(getattr(description, "topic_id", None))

    def _list_offsets(
        self, partitions: Sequence[int], spec: OffsetSpec, timeout: float
    ) -> dict[int, int]:
        # Through the admin client's own connections: the consumer's connection to
        # a leader is held by its long-polling fetch (up to fetch.wait.max.ms).
        futures = self.admin.list_offsets(
            {TopicPartition(self.topic, p): spec for p in partitions}, request_timeout=timeout
        )
        return {tp.partition: int(f.result(timeout=timeout).offset) for tp, f in futures.items()}

    def _resolve(self, offsets: Mapping[int, int | None]) -> list[TopicPartition]:
        """Offsets to assign at, ``None`` resolved to the earliest retained offset now
        (so the positions are known from the start)."""
        earliest = [p for p, o in offsets.items() if o is None]
        try:
            low = self._list_offsets(earliest, OffsetSpec.earliest(), self._connect_timeout)  # type: ignore[no-untyped-call]
        except Exception:
            low = {}
        return [
            TopicPartition(
                self.topic, p, o if o is not None else max(0, low.get(p, OFFSET_BEGINNING))
            )
            for p, o in sorted(offsets.items())
        ]

    def assign(self, offsets: Mapping[int, int | None]) -> dict[int, int]:
        tps = self._resolve(offsets)
        try:
            self.consumer.assign(tps)
        except KafkaException as exc:
            what = f"cannot assign {self.topic!r} partitions"
            raise BrokerUnavailableError(f"{what}: {exc}") from None
        return {tp.partition: max(0, tp.offset) for tp in tps}

    def add_partitions(self, offsets: Mapping[int, int | None]) -> dict[int, int]:
        tps = self._resolve(offsets)
        self.consumer.incremental_assign(tps)
        return {tp.partition: max(0, tp.offset) for tp in tps}

    def end_offsets(self, partitions: Sequence[int], timeout: float) -> dict[int, int]:
        return self._list_offsets(partitions, OffsetSpec.latest(), timeout)  # type: ignore[no-untyped-call]

    def position(self, partition: int) -> int | None:
        try:
            (found,) = self.consumer.position([TopicPartition(self.topic, partition)])
        except KafkaException:
            return None
        return int(found.offset) if found.offset >= 0 else None

    def poll(self, timeout: float, core: ConsumerCore) -> int:
        errors = self._errors
        errors.clear()
        consumer = self.consumer
        # consume(n, timeout) waits for n messages or the timeout, whichever is
        # first: wait for the first message only, then take what else is queued.
        first = consumer.poll(timeout)
        messages = [] if first is None else [first, *consumer.consume(_BATCH, 0)]
        handle = core.handle
        n = 0
        for message in messages:
            error = message.error()
            if error is None:
                # A message without an error always has its partition and offset.
                handle(message.partition(), message.offset(), message.value(), message)  # type: ignore[arg-type]
                n += 1
                continue
            where, at = message.partition(), message.offset()
            if where is not None and at is not None and at >= 0:
                core.unparseable(where, at, f"{error.name()}: {error.str()}")
                with contextlib.suppress(KafkaException):
                    self.consumer.seek(TopicPartition(self.topic, where, at + 1))
                n += 1
            else:
                errors.append(f"{error.name()}: {error.str()}")
        if self._producer is not None:
            self._producer.poll(0)  # delivery callbacks of watermarks
        if errors and not n:
            raise BrokerUnavailableError("; ".join(dict.fromkeys(errors)))
        return n

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
        callback = None
        if delivered is not None:

            def callback(error: KafkaError | None, _message: Any) -> None:
                delivered(None if error is None else KafkaException(error))

        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": callback}
        if headers:
            kwargs["headers"] = list(headers)
        try:
            self._producer.produce(topic, **kwargs)
        except BufferError:
            self._producer.poll(0.05)
            self._producer.produce(topic, **kwargs)

    def flush(self, timeout: float) -> None:
        if self._producer is not None:
            remaining = self._producer.flush(timeout)
            if remaining:
                raise BrokerUnavailableError(f"{remaining} records not delivered within {timeout}s")

    def pause(self) -> None:
        self.consumer.pause(self.consumer.assignment())

    def resume(self) -> None:
        self.consumer.resume(self.consumer.assignment())

    def close(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                self._consumer.close()
            self._consumer = None
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.flush(5)
            self._producer = None
        self._admin = None
