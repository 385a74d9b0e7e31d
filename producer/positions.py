"""Where an event is in the events topic: (partition, offset), which watermarks are compared with.

An event's position comes, best first, from

1. the publish acknowledgement (:class:`~producer.publisher.Published`, which a
   publisher hands to its tracker on every publish);
2. a per-event :class:`~schemas.Receipt` of an instance not yet sending watermarks
   (it names the partition and offset it applied);
3. a bounded scan of the events topic from a point in time (:class:`EventsReader`),
   for an event published by another process (``revocast status EVENT_ID``).

Guarantees of the scan: it reads at most ``max_records`` records for at most
``timeout`` seconds, parses each value only far enough to compare event ids, and
never applies anything. A record that merely *claims* the event's id cannot make
it look in force earlier than it is: with ``keys`` only records that verify count,
and the earliest verified copy is the event; without ``keys`` the *latest* copy is
taken, so every copy (the real one among them) lies at or before the position that
watermarks must pass.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jwt.utils import base64url_decode
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from schemas import BrokerUnavailableError, InvalidEventError, KeySet, TopicNames, decode_records
from schemas.codec import MAX_RECORD_BYTES
from schemas.signing import is_signed

__all__ = ["EventRef", "EventsReader"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EventRef:
    """An event's place in the events topic (a batch record's events share one offset)."""

    event_id: uuid.UUID
    event_type: str | None
    partition: int
    offset: int
    published_at_ns: int | None
    source: dict[str, Any] | None = None
    """Where the event came from (``schemas.Source``: channel, origin, SET jti, txn...), as
    read from the record; informational (unverified when the tracker has no event keys)."""


_Found = tuple[str, str | None, int | None, dict[str, Any] | None]


def _ids_in(value: bytes | None, keys: KeySet | None) -> list[_Found]:
    """(event_id, type, published_at_ns, source) of every event in a record value; [] when
    unreadable."""
    if not value or len(value) > MAX_RECORD_BYTES:
        return []
    if keys is not None:
        try:
            envs = decode_records(value, keys, require_signature=True)
        except InvalidEventError:
            return []
        return [
            (
                str(e.event_id),
                e.event.type,
                e.published_at_ns,
                _source_of(e.event.model_dump(mode="json")),
            )
            for e in envs
        ]
    payload = value
    try:
        if is_signed(value):
            payload = base64url_decode(value.split(b".")[1])
        data: Any = json.loads(payload)
    except (ValueError, IndexError, RecursionError):
        return []
    if not isinstance(data, dict):
        return []
    items = data.get("events") if data.get("type") == "batch" else [data]
    out = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("event_id"), str):
            event = item.get("event")
            kind = event.get("type") if isinstance(event, dict) else None
            stamp = item.get("published_at_ns")
            out.append(
                (
                    item["event_id"],
                    kind if isinstance(kind, str) else None,
                    stamp if isinstance(stamp, int) else None,
                    _source_of(event),
                )
            )
    return out


def _source_of(event: Any) -> dict[str, Any] | None:
    source = event.get("source") if isinstance(event, dict) else None
    if not isinstance(source, dict):
        return None
    # Bounded: the known Source fields, as short strings.
    keys = ("channel", "origin", "ref", "txn", "toe", "received_at")
    return {k: str(source[k])[:256] for k in keys if source.get(k) is not None}


class EventsReader:
    """Reads the events topic for the tracker: end offsets (lag) and event positions.

    One kafka-python consumer, created on first use, used by one caller at a time.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: TopicNames,
        *,
        timeout: float = 10.0,
        client_id: str = "revocast-tracker-events",
        kafka_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.timeout = timeout
        self.client_id = client_id
        self.kafka_options = dict(kafka_options or {})
        self._lock = threading.Lock()
        self._consumer: Any = None
        self._ends: tuple[float, dict[int, int]] | None = None

    def _client(self) -> Any:
        if self._consumer is None:
            ms = max(1000, int(self.timeout * 1000))
            try:
                self._consumer = KafkaConsumer(
                    bootstrap_servers=self.bootstrap,
                    client_id=self.client_id,
                    group_id=None,
                    enable_auto_commit=False,
                    allow_auto_create_topics=False,
                    fetch_max_wait_ms=100,
                    request_timeout_ms=ms,
                    bootstrap_timeout_ms=ms,
                    **self.kafka_options,
                )
            except KafkaError as exc:
                raise BrokerUnavailableError(
                    f"cannot read {self.topics.events} from Kafka at {self.bootstrap}: {exc}"
                ) from None
        return self._consumer

    def _partitions(self, consumer: Any) -> list[TopicPartition]:
        parts = consumer.partitions_for_topic(self.topics.events) or set()
        return [TopicPartition(self.topics.events, p) for p in sorted(parts)]

    def end_offsets(self, max_age: float = 1.0) -> dict[int, int]:
        """partition -> end offset of the events topic (cached for ``max_age`` s)."""
        with self._lock:
            now = time.monotonic()
            if self._ends is not None and now - self._ends[0] < max_age:
                return dict(self._ends[1])
            consumer = self._client()
            try:
                tps = self._partitions(consumer)
                ends = consumer.end_offsets(tps, timeout_ms=int(self.timeout * 1000))
            except KafkaError as exc:
                raise BrokerUnavailableError(
                    f"cannot read the end offsets of {self.topics.events}: {exc}"
                ) from None
            found = {tp.partition: int(off) for tp, off in ends.items()}
            self._ends = (now, found)
            return dict(found)

    def locate(
        self,
        event_id: uuid.UUID,
        *,
        since: datetime,
        timeout: float,
        keys: KeySet | None = None,
        max_records: int = 2_000_000,
    ) -> EventRef | None:
        """The position of ``event_id`` among records written since ``since``; see the module."""
        wanted = str(event_id)
        deadline = time.monotonic() + timeout
        copies: list[EventRef] = []
        with self._lock:
            consumer = self._client()
            try:
                tps = self._partitions(consumer)
                if not tps:
                    return None
                consumer.assign(tps)
                ends = consumer.end_offsets(tps, timeout_ms=int(timeout * 1000))
                starts = consumer.offsets_for_times(
                    dict.fromkeys(tps, max(0, int(since.timestamp() * 1000))),
                    timeout_ms=int(timeout * 1000),
                )
                todo: dict[TopicPartition, int] = {}
                for tp in tps:
                    start = starts.get(tp)
                    if start is not None and start.offset < ends[tp]:
                        consumer.seek(tp, start.offset)
                        todo[tp] = ends[tp]
                consumer.pause(*[tp for tp in tps if tp not in todo])
                seen = 0
                while todo and seen < max_records and time.monotonic() < deadline:
                    for tp, records in consumer.poll(timeout_ms=200, max_records=2000).items():
                        for record in records:
                            seen += 1
                            if record.offset + 1 >= todo.get(tp, 0):
                                todo.pop(tp, None)
                                consumer.pause(tp)
                            for found, kind, stamp, source in _ids_in(record.value, keys):
                                if found == wanted:
                                    ref = EventRef(
                                        event_id, kind, tp.partition, record.offset, stamp, source
                                    )
                                    copies.append(ref)
            except KafkaError as exc:
                raise BrokerUnavailableError(
                    f"cannot read {self.topics.events} to find event {event_id}: {exc}"
                ) from None
            finally:
                consumer.assign([])
            if todo and (keys is None or not copies):
                raise BrokerUnavailableError(
                    f"could not read {self.topics.events} to its end within {timeout:g} s "
                    f"(or {max_records} records) to find event {event_id}"
                )
        if not copies:
            return None
        if keys is not None:
            return min(copies, key=lambda r: (r.offset, r.partition))
        if len({r.partition for r in copies}) > 1:
            # Unverified copies in several partitions: no single position is safe to wait on.
            log.warning(
                "event %s appears in partitions %s of %s; without keys none is taken",
                event_id,
                sorted({r.partition for r in copies}),
                self.topics.events,
            )
            return None
        return max(copies, key=lambda r: r.offset)

    def close(self) -> None:
        with self._lock:
            consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(KafkaError):  # closing must not fail a shutdown
                consumer.close(autocommit=False, timeout_ms=1000)
