"""A revocation-list poller, measured: ``python -m bench.poller --redis-url URL --out FILE``.

The model revocast is compared with: a service downloads the whole revocation
list (a Redis list on loopback) every P seconds. One thread per period P polls
with a random phase; a revoker appends ``"<n>:<time_ns>"`` entries at uniformly
random instants within ``--window`` seconds. For every entry and every poller
the latency is ``time_ns() after the LRANGE that first returned it - time_ns()
just before the RPUSH``. Both clocks are this process's ``time.time_ns``.

Bounded: the process ends ``window + max(P) + 2`` seconds after it starts (or
earlier on SIGTERM), and writes what it measured as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import redis

__all__ = ["main", "measure_polling"]


def _poll_loop(
    client: redis.Redis,
    key: str,
    period: float,
    phase: float,
    stop: threading.Event,
    latencies: list[int],
    polls: list[int],
) -> None:
    seen: set[bytes] = set()
    next_at = time.monotonic() + phase
    while not stop.wait(max(0.0, next_at - time.monotonic())):
        next_at += period
        entries: list[bytes] = client.lrange(key, 0, -1)  # type: ignore[assignment]
        detected = time.time_ns()
        polls[0] += 1
        for entry in entries:
            if entry in seen:
                continue
            seen.add(entry)
            revoked_ns = int(entry.split(b":", 1)[1])
            latencies.append(detected - revoked_ns)


def measure_polling(
    redis_url: str,
    periods: Sequence[float],
    window: float,
    revocations: int,
    *,
    seed: int = 0,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Run the pollers and the revoker; returns ``{"periods": {P: {...}}, ...}``."""
    rng = random.Random(seed)
    stop = stop or threading.Event()
    key = f"bench:revocation-list:{uuid.uuid4().hex[:12]}"
    revoker = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    clients = [
        redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        for _ in periods
    ]
    results: dict[float, list[int]] = {p: [] for p in periods}
    polls: dict[float, list[int]] = {p: [0] for p in periods}
    threads = [
        threading.Thread(
            target=_poll_loop,
            args=(client, key, p, rng.uniform(0, p), stop, results[p], polls[p]),
            name=f"poller-{p:g}s",
            daemon=True,
        )
        for client, p in zip(clients, periods, strict=True)
    ]
    revoke_at = sorted(rng.uniform(0.0, window) for _ in range(revocations))
    begin = time.monotonic()
    revoked = 0
    try:
        revoker.delete(key)
        for t in threads:
            t.start()
        for n, at in enumerate(revoke_at):
            if stop.wait(max(0.0, begin + at - time.monotonic())):
                break
            revoker.rpush(key, f"{n}:{time.time_ns()}".encode())
            revoked += 1
        # Every poller needs at most one period to see the last entry.
        stop.wait(max(periods) + 1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        try:
            revoker.delete(key)
        finally:
            revoker.close()
            for client in clients:
                client.close()
    return {
        "kind": "measured",
        "method": "one thread per period P polls LRANGE of a Redis list on 127.0.0.1 "
        "every P s (random phase); latency = detect time - revoke time (same process clock)",
        "window_s": window,
        "revocations": revoked,
        "elapsed_s": round(time.monotonic() - begin, 3),
        "periods": {
            f"{p:g}": {"period_s": p, "polls": polls[p][0], "latencies_ns": results[p]}
            for p in periods
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.poller", description=__doc__)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--periods", default="1,5,30", help="comma-separated seconds")
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--revocations", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    periods = [float(p) for p in args.periods.split(",") if p.strip()]
    if not periods or min(periods) <= 0 or args.window <= 0 or args.revocations <= 0:
        parser.error("periods, window and revocations must be positive")
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    result = measure_polling(
        args.redis_url, periods, args.window, args.revocations, seed=args.seed, stop=stop
    )
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
