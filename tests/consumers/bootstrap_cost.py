"""Ready time of a new instance with N retained revocations: cold, and from a snapshot.

Reports numbers; asserts nothing. Run from the repo root:

    KAFKA_BOOTSTRAP_SERVERS=... REDIS_URL=... .venv/bin/python -m tests.consumers.bootstrap_cost \\
        --records 1000000 --engines confluent,kafka-python

Fills a fresh 3-partition events topic with N distinct signed revocations (signed by
one process per core), then per engine: a cold start (every record replayed; its stop
saves a snapshot to Redis), ``--tail`` more records, and a start from that snapshot
(:func:`consumers.testing.measure_bootstrap`). One JSON object per run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor

from kafka import KafkaProducer

from consumers import RedisSnapshotStore
from consumers.redis_store import connect
from consumers.testing import measure_bootstrap
from schemas import Envelope, KeySet, SigningKey, TopicNames, encode
from tests.conftest import create_topics
from tests.consumers.conftest import make_event

_KEY = SigningKey.generate("bootstrap-cost")


def _sign(bounds: tuple[int, int, dict[str, str]]) -> list[bytes]:
    start, stop, jwk = bounds
    key = SigningKey.from_jwk(jwk)
    return [encode(Envelope.wrap(make_event(i, subjects=50_000), issuer="boot"), key)
            for i in range(start, stop)]


def fill(bootstrap: str, topic: str, start: int, count: int) -> float:
    begin = time.monotonic()
    workers = max(1, os.cpu_count() or 1)
    step = max(1, count // (workers * 8))
    parts = [(s, min(s + step, start + count), _KEY.private_jwk())
             for s in range(start, start + count, step)]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20,
                             batch_size=512 * 1024, compression_type=None)
    with ProcessPoolExecutor(workers) as pool:
        for values in pool.map(_sign, parts):
            for i, value in enumerate(values):
                producer.send(topic, value=value, key=str(i % 5000).encode())
    producer.flush()
    producer.close()
    return time.monotonic() - begin


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--tail", type=int, default=1000)
    parser.add_argument("--engines", default="confluent,kafka-python")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL"))
    args = parser.parse_args()
    topics = TopicNames.prefixed(f"boot-{uuid.uuid4().hex[:8]}")
    create_topics(args.bootstrap, topics)
    keys = KeySet.of([_KEY])
    filled = fill(args.bootstrap, topics.events, 0, args.records)
    print(json.dumps({"filled": args.records, "seconds": round(filled, 1)}), flush=True)
    client = connect(args.redis)
    offset = args.records
    try:
        for engine in args.engines.split(","):
            store = RedisSnapshotStore(client, f"boot-{engine}-{topics.events}")
            cold = measure_bootstrap(args.bootstrap, topics, keys, engine=engine,
                                     snapshots=store, timeout=1800)
            print(json.dumps({"run": "cold", **cold.to_dict(),
                              "load": os.getloadavg()[0]}), flush=True)
            fill(args.bootstrap, topics.events, offset, args.tail)
            offset += args.tail
            warm = measure_bootstrap(args.bootstrap, topics, keys, engine=engine,
                                     snapshots=store, timeout=1800)
            print(json.dumps({"run": "snapshot", **warm.to_dict(),
                              "load": os.getloadavg()[0]}), flush=True)
            store.delete(topics.events)
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
