"""A bare Kafka consumer, for the floor each engine's cost is compared with.

    python -m bench.bareclient --client kafka-python --bootstrap B --topic T --live STATUS
    python -m bench.bareclient --client confluent-kafka --bootstrap B --topic T --replay

It assigns every partition of ``--topic`` (no group, nothing committed), counts
records and payload bytes, and does nothing else: no decode, no verify, no
receipts. What it costs is what the Kafka client library itself costs.

* ``--live FILE``: start at the end of every partition and count new records
  until SIGTERM; every 0.2 s (and on exit) write ``{"records", "cpu_s",
  "wall_s"}`` to FILE atomically, ``cpu_s`` from ``getrusage(RUSAGE_SELF)``
  (user + system, every thread). The harness takes two such snapshots around a
  paced step: CPU per record at that rate.
* ``--replay``: start at the beginning, read up to the end offsets seen at start,
  print one JSON object (records, seconds, rate, CPU seconds): the client's raw
  consume rate.

Clients: ``kafka-python`` (the reference engine's), ``aiokafka`` (faust's),
``confluent-kafka`` (librdkafka). Each uses its library's default fetch settings.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["main"]

_STATUS_EVERY = 0.2


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Counter:
    def __init__(self, status: Path | None) -> None:
        self.records = 0
        self.bytes = 0
        self.status = status
        self.begin = time.monotonic()
        self._next = 0.0
        self.stop = False

    def add(self, count: int, size: int) -> None:
        self.records += count
        self.bytes += size

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.status is None or (not force and now < self._next):
            return
        self._next = now + _STATUS_EVERY
        tmp = self.status.with_suffix(".tmp")
        tmp.write_text(json.dumps({"records": self.records, "bytes": self.bytes,
                                   "cpu_s": _cpu_s(), "wall_s": now - self.begin}))
        os.replace(tmp, self.status)


def _kafka_python(bootstrap: str, topic: str, live: bool, counter: _Counter,
                  timeout: float) -> dict[str, Any]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="revocast-bench-bare",
                             group_id=None, enable_auto_commit=False,
                             auto_offset_reset="latest" if live else "earliest")
    try:
        deadline = time.monotonic() + 20
        parts = consumer.partitions_for_topic(topic)
        while not parts and time.monotonic() < deadline:
            time.sleep(0.2)
            parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
        if not tps:
            raise RuntimeError(f"topic {topic!r} not found")
        consumer.assign(tps)
        if live:
            consumer.seek_to_end(*tps)
            for tp in tps:
                consumer.position(tp)
            counter.tick(force=True)
            while not counter.stop:
                for batch in consumer.poll(timeout_ms=100).values():
                    counter.add(len(batch), sum(len(r.value or b"") for r in batch))
                counter.tick()
            return {}
        consumer.seek_to_beginning(*tps)
        ends = {tp: int(o) for tp, o in consumer.end_offsets(tps).items()}
        end_by = time.monotonic() + timeout
        done = False
        while not done and time.monotonic() < end_by:
            for batch in consumer.poll(timeout_ms=100).values():
                counter.add(len(batch), sum(len(r.value or b"") for r in batch))
            done = all(consumer.position(tp) >= end for tp, end in ends.items())
        return {"expected": sum(ends.values()), "complete": done}
    finally:
        consumer.close(autocommit=False)


def _aiokafka(bootstrap: str, topic: str, live: bool, counter: _Counter,
              timeout: float) -> dict[str, Any]:
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> dict[str, Any]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="revocast-bench-bare",
                                    group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="latest" if live else "earliest")
        await consumer.start()
        try:
            deadline = time.monotonic() + 20
            parts = None
            while not parts and time.monotonic() < deadline:
                # aiokafka has no public call for a topic's partitions without a
                # subscription: its own consumer reads them from the cluster metadata.
                cluster = await consumer._client.fetch_all_metadata()
                parts = cluster.partitions_for_topic(topic)
                if not parts:
                    await asyncio.sleep(0.2)
            tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
            if not tps:
                raise RuntimeError(f"topic {topic!r} not found")
            consumer.assign(tps)
            if live:
                await consumer.seek_to_end(*tps)
                for tp in tps:
                    await consumer.position(tp)
                counter.tick(force=True)
                while not counter.stop:
                    batches = await consumer.getmany(timeout_ms=100)
                    for batch in batches.values():
                        counter.add(len(batch), sum(len(r.value or b"") for r in batch))
                    counter.tick()
                return {}
            await consumer.seek_to_beginning(*tps)
            ends = {tp: int(o) for tp, o in (await consumer.end_offsets(tps)).items()}
            end_by = time.monotonic() + timeout
            done = False
            while not done and time.monotonic() < end_by:
                batches = await consumer.getmany(timeout_ms=100, max_records=10_000)
                for batch in batches.values():
                    counter.add(len(batch), sum(len(r.value or b"") for r in batch))
                positions = [await consumer.position(tp) for tp in tps]
                done = all(pos >= ends[tp] for tp, pos in zip(tps, positions, strict=True))
            return {"expected": sum(ends.values()), "complete": done}
        finally:
            await consumer.stop()

    return asyncio.run(run())


def _confluent(bootstrap: str, topic: str, live: bool, counter: _Counter,
               timeout: float) -> dict[str, Any]:
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"revocast-bench-bare-{os.getpid()}",  # required; never joined (assign)
        "enable.auto.commit": False,
        "client.id": "revocast-bench-bare",
    })
    try:
        meta = consumer.list_topics(topic, timeout=20)
        parts = sorted(meta.topics[topic].partitions) if topic in meta.topics else []
        if not parts or meta.topics[topic].error is not None:
            raise RuntimeError(f"topic {topic!r} not found")
        start = OFFSET_END if live else OFFSET_BEGINNING
        consumer.assign([TopicPartition(topic, p, start) for p in parts])
        if live:
            counter.tick(force=True)
            while not counter.stop:
                msgs = consumer.consume(num_messages=1000, timeout=0.1)
                counter.add(sum(1 for m in msgs if m.error() is None),
                            sum(len(m.value() or b"") for m in msgs if m.error() is None))
                counter.tick()
            return {}
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in parts}
        expected = sum(ends.values())
        end_by = time.monotonic() + timeout
        while counter.records < expected and time.monotonic() < end_by:
            msgs = consumer.consume(num_messages=10_000, timeout=0.1)
            counter.add(sum(1 for m in msgs if m.error() is None),
                        sum(len(m.value() or b"") for m in msgs if m.error() is None))
        return {"expected": expected, "complete": counter.records >= expected}
    finally:
        consumer.close()


_CLIENTS: dict[str, Callable[[str, str, bool, _Counter, float], dict[str, Any]]] = {
    "kafka-python": _kafka_python,
    "aiokafka": _aiokafka,
    "confluent-kafka": _confluent,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bareclient")
    parser.add_argument("--client", choices=sorted(_CLIENTS), required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--live", type=Path, metavar="STATUS_FILE")
    mode.add_argument("--replay", action="store_true")
    parser.add_argument("--timeout", type=float, default=600.0, help="replay: longest run")
    args = parser.parse_args(argv)
    counter = _Counter(args.live)

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        counter.stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    cpu0 = _cpu_s()
    begin = time.monotonic()
    extra = _CLIENTS[args.client](args.bootstrap, args.topic, args.live is not None, counter,
                                  args.timeout)
    elapsed = time.monotonic() - begin
    counter.tick(force=True)
    if args.replay:
        print(json.dumps({
            "mode": "raw",
            "client": args.client,
            "records": counter.records,
            "payload_bytes": counter.bytes,
            "elapsed_s": round(elapsed, 3),
            "rate_per_s": round(counter.records / elapsed, 1) if elapsed > 0 else None,
            "cpu_s": round(_cpu_s() - cpu0, 3),
            "cpu_us_per_record": (round((_cpu_s() - cpu0) / counter.records * 1e6, 1)
                                  if counter.records else None),
            **extra,
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
