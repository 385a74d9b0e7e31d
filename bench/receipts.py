"""Read the receipts topic: every partition, manual assignment, from the beginning.

The harness does not read receipts *while* a step publishes: on two cores that
reader would compete with the services it measures. It watches only the end
offsets (a cheap ListOffsets request) until as many receipts as expected have
been written, then reads them all. The latencies are unaffected by when they are
read: each receipt carries its own publish and apply times.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from pydantic import ValidationError

from schemas import Receipt

__all__ = ["DrainResult", "ReceiptReader"]


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

    def total_written(self) -> int:
        return sum(self.end_offsets().values())

    def poll(self, timeout: float = 0.2) -> list[Receipt]:
        """Whatever arrives within ``timeout`` s (used while waiting for probes)."""
        out: list[Receipt] = []
        batches = self._consumer.poll(timeout_ms=int(timeout * 1000))
        for records in batches.values():
            for record in records:
                self._parse(record.value, out)
        return out

    def read_to(self, ends: dict[int, int], timeout: float) -> list[Receipt]:
        """Read until the position on every partition reaches ``ends`` (or ``timeout``)."""
        out: list[Receipt] = []
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

    def read_to_end(self, timeout: float = 30.0) -> list[Receipt]:
        return self.read_to(self.end_offsets(), timeout)

    def _parse(self, value: bytes | None, out: list[Receipt]) -> None:
        try:
            out.append(Receipt.from_bytes(value or b""))
        except ValidationError:
            self.invalid += 1

    def wait_written(
        self,
        base: int,
        expected: int,
        *,
        timeout: float,
        stall: float,
        on_progress: Callable[[int], None] | None = None,
    ) -> DrainResult:
        """Wait until ``expected`` receipts were written after ``base`` (end-offset sum).

        Gives up after ``timeout`` s, or after ``stall`` s without a single new receipt.
        """
        begin = time.monotonic()
        last_change = begin
        last = -1
        while True:
            written = self.total_written() - base
            now = time.monotonic()
            if on_progress is not None:
                on_progress(written)
            if written >= expected:
                return DrainResult(written, expected, now - begin, "complete")
            if written != last:
                last, last_change = written, now
            if now - begin >= timeout:
                return DrainResult(written, expected, now - begin, "timeout")
            if now - last_change >= stall:
                return DrainResult(written, expected, now - begin, "stalled")
            time.sleep(0.25)
