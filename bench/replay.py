"""Bootstrap a fresh process from retained history, and measure it: ``python -m bench.replay``.

Each measurement runs in its own process so that its peak memory is its own.

* ``--mode apply``: a :class:`consumers.RevocationConsumer` (receipts off; engine
  ``--engine``) is started on the topic and timed from ``start()`` until
  ``wait_ready()`` returns, i.e. until every retained record is verified, decoded and
  applied. With ``--snapshot-redis`` it keeps a snapshot in Redis: a first run replays
  everything and saves one on stop, a second run starts from it (``from_snapshot``)
  and replays only what follows its offsets. Memory: peak
  RSS (``VmHWM``) and its growth over the RSS measured just before ``start()``.
* raw consume (no verify, no decode, no apply) is :mod:`bench.bareclient`
  ``--replay``, for every engine's Kafka client.
* ``--mode profile``: as ``apply``, but the consumer loop runs in the main thread
  under pyinstrument (``RevocationConsumer.run()``), stopping once ready; the
  profile is written to ``--profile-out`` (text) and summarised in the JSON.

The result is one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def _rss_kb() -> int:
    return _status_kb("VmRSS:")


def _peak_kb() -> int:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so a child
    # would report its parent's (the harness's) peak.
    return _status_kb("VmHWM:")


def _consumer(bootstrap: str, prefix: str, jwks: str, engine: str = "kafka-python",
              snapshot_redis: str | None = None) -> Any:
    import inspect

    from consumers import RevocationConsumer
    from schemas import KeySet, TopicNames

    options: dict[str, Any] = {}
    if engine != "kafka-python":
        if "engine" not in inspect.signature(RevocationConsumer).parameters:
            raise SystemExit(f"this RevocationConsumer has no engine option: cannot run {engine}")
        options["engine"] = engine
    if snapshot_redis is not None:
        import redis

        from consumers import RedisSnapshotStore

        client = redis.Redis.from_url(snapshot_redis, socket_timeout=120)
        options["snapshots"] = RedisSnapshotStore(client, "bench-replay",
                                                  prefix=f"bench-snap-{prefix}")
        # Only the snapshot saved on stop: a periodic one would slow the timed replay.
        options["snapshot_interval"] = 1e9
    return RevocationConsumer(
        bootstrap,
        TopicNames.prefixed(prefix),
        "bench-replay",
        "replay-1",
        KeySet.load(jwks),
        publish_receipts=False,
        max_staleness=3600.0,
        **options,
    )


def _apply(bootstrap: str, prefix: str, jwks: str, timeout: float, engine: str,
           snapshot_redis: str | None, forget_snapshot: bool) -> dict[str, Any]:
    consumer = _consumer(bootstrap, prefix, jwks, engine, snapshot_redis)
    rss_before = _rss_kb()
    begin = time.monotonic()
    try:
        consumer.start()
        ready = consumer.wait_ready(timeout)
        elapsed = time.monotonic() - begin
        stats = consumer.stats()
        entries = len(consumer.state)
        counts = consumer.state.counts()
        warmed = consumer.warmed_from is not None
    finally:
        consumer.stop()  # with a snapshot store: saves the snapshot a next run starts from
        store = getattr(consumer, "_snapshots", None)
        if forget_snapshot and store is not None:
            store.client.delete(store.key(consumer.topics.events))
    return {
        "mode": "apply",
        "engine": engine,
        "from_snapshot": warmed,
        "records": stats.records,
        "applied": stats.applied,
        "dead_lettered": stats.dead_lettered,
        "complete": ready,
        "state_entries": entries,
        "state_counts": counts,
        "elapsed_s": round(elapsed, 3),
        "rate_per_s": round(stats.records / elapsed, 1) if elapsed > 0 else None,
        "rss_before_kb": rss_before,
        "peak_rss_kb": _peak_kb(),
        "rss_growth_kb": _peak_kb() - rss_before,
    }


def _profile(bootstrap: str, prefix: str, jwks: str, timeout: float, out: Path) -> dict[str, Any]:
    from pyinstrument import Profiler

    from bench.profiling import pyinstrument_top

    consumer = _consumer(bootstrap, prefix, jwks)

    def stop_when_ready() -> None:
        # The loop runs in the main thread (run()); this watcher ends it.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not consumer.ready and consumer.error is None:
            time.sleep(0.05)
        consumer.stop()

    watcher = threading.Thread(target=stop_when_ready, daemon=True)
    profiler = Profiler(interval=0.001)
    begin = time.monotonic()
    watcher.start()
    profiler.start()
    try:
        consumer.run()
    finally:
        profiler.stop()
    elapsed = time.monotonic() - begin
    out.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    stats = consumer.stats()
    return {
        "mode": "profile",
        "records": stats.records,
        "elapsed_s": round(elapsed, 3),
        "profiler": "pyinstrument (main-thread consumer loop; 1 ms interval)",
        "top": pyinstrument_top(profiler.last_session),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay")
    parser.add_argument("--mode", choices=("apply", "profile"), required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True, help="topic prefix (TopicNames.prefixed)")
    parser.add_argument("--jwks", default=None)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--profile-out", default=None)
    parser.add_argument("--engine", default="kafka-python", help="the consumer's engine")
    parser.add_argument(
        "--snapshot-redis", default=None,
        help="keep a snapshot in this Redis: start from it when there is one, save one on stop",
    )
    parser.add_argument("--forget-snapshot", action="store_true",
                        help="delete the snapshot after this run")
    args = parser.parse_args(argv)
    if args.mode == "apply":
        result = _apply(args.bootstrap, args.prefix, args.jwks, args.timeout, args.engine,
                        args.snapshot_redis, args.forget_snapshot)
    else:
        result = _profile(
            args.bootstrap, args.prefix, args.jwks, args.timeout, Path(args.profile_out)
        )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
