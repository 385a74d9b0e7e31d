"""A consumer in its own process, for the crash test (run by test_consumers_crash.py).

    python tests/consumers/consumer_proc.py --bootstrap HOST:PORT --prefix P \\
        --jwks jwks.json --out DIR --instance NAME [--redis URL]

Writes into DIR: ``applied-NAME.log`` (one event id per line, flushed per line),
``ready-NAME`` once caught up, and ``state-NAME.json`` (the state snapshot and
the consumer's stats) every 0.2 s and on SIGTERM. SIGKILL, of course, writes
nothing more.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from types import FrameType

from consumers import RedisSnapshotStore, RevocationConsumer
from consumers.redis_store import connect
from schemas import Envelope, KeySet, TopicNames


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--jwks", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--redis", default=None)
    args = parser.parse_args()
    out = Path(args.out)
    log = (out / f"applied-{args.instance}.log").open("a", buffering=1)

    def on_applied(envelope: Envelope, _applied_ns: int) -> None:
        log.write(f"{envelope.event_id}\n")

    snapshots = None
    if args.redis:
        snapshots = RedisSnapshotStore(connect(args.redis), f"crash-{args.prefix}")
    consumer = RevocationConsumer(
        args.bootstrap,
        TopicNames.prefixed(args.prefix),
        "crash-test",
        args.instance,
        KeySet.load(args.jwks),
        snapshots=snapshots,
        snapshot_interval=0.2,
        on_applied=on_applied,
    )
    stop = threading.Event()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)

    def dump() -> None:
        path = out / f"state-{args.instance}.json"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        body = {
            "state": consumer.state.snapshot(),
            "stats": asdict(consumer.stats()),
            "warmed": consumer.warmed_from is not None,
        }
        tmp.write_text(json.dumps(body))
        tmp.replace(path)

    consumer.start()
    deadline = time.monotonic() + 120  # never outlive a hung test
    while not stop.wait(0.2) and time.monotonic() < deadline:
        if consumer.error is not None:
            print(f"consumer failed: {consumer.error}", file=sys.stderr)
            return 1
        if consumer.ready:
            (out / f"ready-{args.instance}").touch()
        dump()
    consumer.stop()
    dump()
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
