"""Read what the services report on the receipts topic: every partition, manual assignment.

Two kinds of record can be there, and both are understood:

* a per-event :class:`schemas.Receipt` ("instance I applied event E at T");
* a :class:`schemas.Watermark` ("instance I applied everything before offset O of
  partition P, as of T"). An event's apply time at a service is then the time of the
  first watermark of that service covering the event's (partition, offset), which the
  harness knows from the publish acknowledgement: exact to the batch.

:class:`Applied` joins both into "when did service S apply event E". The harness does
not read *while* a step publishes (on two cores the reader would compete with the
services it measures); it reads while the services drain, until every service has
applied every event of the step (:meth:`ReceiptReader.wait_applied`). The latencies do
not depend on when they are read: each report carries its own apply time.
"""

from __future__ import annotations

import bisect
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from pydantic import ValidationError

from schemas import InvalidEventError, Receipt, Watermark

__all__ = ["Applied", "DrainResult", "ReceiptReader"]

Report = Receipt | Watermark


class Applied:
    """What the services reported: first receipt per (event, service), and per service and
    partition the watermarks that first reached each new offset."""

    def __init__(self) -> None:
        self.receipts: dict[uuid.UUID, dict[str, int]] = {}
        self._marks: dict[str, dict[int, tuple[list[int], list[int]]]] = {}
        """service -> partition -> (next offsets, strictly increasing; their applied_at_ns)"""
        self.reports = 0
        self.watermarks = 0

    def add(self, item: Report) -> None:
        self.reports += 1
        if isinstance(item, Receipt):
            self.receipts.setdefault(item.event_id, {}).setdefault(item.service,
                                                                   item.applied_at_ns)
            return
        self.watermarks += 1
        parts = self._marks.setdefault(item.service, {})
        for partition, next_offset in item.offsets.items():
            offsets, times = parts.setdefault(partition, ([], []))
            if not offsets or next_offset > offsets[-1]:
                offsets.append(next_offset)
                times.append(item.applied_at_ns)

    def applied_ns(self, service: str, event_id: uuid.UUID, position: tuple[int, int]
                   ) -> int | None:
        """When ``service`` applied the event (the earlier of its receipt and the first
        watermark covering ``position`` = (partition, offset)); None if it has not."""
        found = self.receipts.get(event_id, {}).get(service)
        partition, offset = position
        marks = self._marks.get(service, {}).get(partition)
        if marks is not None and partition >= 0:
            offsets, times = marks
            i = bisect.bisect_right(offsets, offset)
            if i < len(offsets):
                found = times[i] if found is None else min(found, times[i])
        return found

    def covers(self, service: str, positions: Mapping[uuid.UUID, tuple[int, int]]) -> bool:
        """Whether ``service`` has applied every event of ``positions``."""
        need: dict[int, int] = {}
        for partition, offset in positions.values():
            need[partition] = max(need.get(partition, -1), offset)
        marks = self._marks.get(service, {})
        if need and all(p in marks and marks[p][0][-1] > o for p, o in need.items()):
            return True
        return all(service in self.receipts.get(e, {}) for e in positions)

    def latencies(
        self, since: Mapping[uuid.UUID, int], positions: Mapping[uuid.UUID, tuple[int, int]],
        services: list[str],
    ) -> Iterator[tuple[uuid.UUID, str, int]]:
        """``(event id, service, applied_ns - since[event id])`` for every applied pair."""
        for event_id, start_ns in since.items():
            position = positions.get(event_id, (-1, -1))
            for service in services:
                applied = self.applied_ns(service, event_id, position)
                if applied is not None:
                    yield event_id, service, applied - start_ns


class DrainResult:
    def __init__(self, written: int, expected: int, waited_s: float, reason: str) -> None:
        self.written = written
        self.expected = expected
        self.waited_s = waited_s
        self.reason = reason  # "complete" | "stalled" | "timeout"

    @property
    def complete(self) -> bool:
        return self.reason == "complete"

    def to_dict(self) -> dict[str, Any]:
        return {
            "receipts_written": self.written,
            "receipts_expected": self.expected,
            "drain_wait_s": round(self.waited_s, 3),
            "drain": self.reason,
        }


class ReceiptReader:
    """A kafka-python consumer over all partitions of one receipts topic."""

    def __init__(self, bootstrap: str, topic: str, *, timeout: float = 15.0) -> None:
        self.topic = topic
        self.invalid = 0
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id="revocast-bench-receipts",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=64 << 20,
            max_poll_records=5000,
        )
        try:
            deadline = time.monotonic() + timeout
            partitions = self._consumer.partitions_for_topic(topic)
            while not partitions:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"receipts topic {topic!r} has no partitions")
                time.sleep(0.2)
                partitions = self._consumer.partitions_for_topic(topic)
            self._tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            self._consumer.assign(self._tps)
            self._consumer.seek_to_beginning(*self._tps)
        except BaseException:
            self._consumer.close()
            raise

    def close(self) -> None:
        self._consumer.close(autocommit=False)

    def end_offsets(self) -> dict[int, int]:
        ends = self._consumer.end_offsets(self._tps)
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    def poll(self, timeout: float = 0.2) -> list[Report]:
        """Whatever arrives within ``timeout`` s."""
        out: list[Report] = []
        batches = self._consumer.poll(timeout_ms=int(timeout * 1000))
        for records in batches.values():
            for record in records:
                self._parse(record.value, out)
        return out

    def read_to(self, ends: dict[int, int], timeout: float) -> list[Report]:
        """Read until the position on every partition reaches ``ends`` (or ``timeout``)."""
        out: list[Report] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            behind = [
                tp for tp in self._tps if self._consumer.position(tp) < ends.get(tp.partition, 0)
            ]
            if not behind:
                break
            batches = self._consumer.poll(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    self._parse(record.value, out)
        return out

    def read_to_end(self, timeout: float = 30.0) -> list[Report]:
        return self.read_to(self.end_offsets(), timeout)

    def _parse(self, value: bytes | None, out: list[Report]) -> None:
        data = value or b""
        try:
            if data.startswith(b"{") and b'"event_id"' in data:
                out.append(Receipt.from_bytes(data))
            else:  # a watermark: JSON, or a JWS signed by the instance (read, not verified)
                out.append(Watermark.from_bytes(data))
        except (ValidationError, InvalidEventError):
            self.invalid += 1

    def wait_applied(
        self,
        positions: Mapping[uuid.UUID, tuple[int, int]],
        services: list[str],
        *,
        timeout: float,
        stall: float,
        applied: Applied | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> tuple[DrainResult, Applied]:
        """Read reports until every service applied every event of ``positions`` (event id
        -> (partition, offset)); give up after ``timeout`` s, or ``stall`` s without a new
        report. ``on_progress`` gets the number of services done."""
        applied = applied if applied is not None else Applied()
        begin = time.monotonic()
        last_change = begin
        done: set[str] = set()
        while True:
            items = self.poll(0.2)
            now = time.monotonic()
            for item in items:
                applied.add(item)
            if items:
                last_change = now
                done |= {s for s in services if s not in done and applied.covers(s, positions)}
                if on_progress is not None:
                    on_progress(len(done))
            expected = len(services) * len(positions)
            if len(done) == len(services):
                return DrainResult(expected, expected, now - begin, "complete"), applied
            reason = ("timeout" if now - begin >= timeout
                      else "stalled" if now - last_change >= stall else None)
            if reason is not None:
                written = sum(1 for e, pos in positions.items() for s in services
                              if applied.applied_ns(s, e, pos) is not None)
                return DrainResult(written, expected, now - begin, reason), applied
