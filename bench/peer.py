"""One peer service: what a team would build instead of revocast, on Redis.

    python -m bench.peer --mode pubsub  --redis-url URL --key CHANNEL --service svc1 --ready F
    python -m bench.peer --mode streams --redis-url URL --key STREAM  --service svc1 --ready F

Both keep an in-process cache of revoked session ids with their expiry (a dict,
as a team would write it: a check is one lookup) and apply each revocation the
moment it arrives; neither verifies a signature or reports receipts. The peer
imports nothing of revocast, so it starts in a fraction of a second. A message is JSON:
``{"id", "t" (published_at_ns), "sid", "exp"}`` for a session revocation, or a
control message ``{"ctl": "dump", "for": SERVICE, "path": FILE}``.

* ``pubsub``: ``SUBSCRIBE`` to one channel (Redis pub/sub fan-out). No replay:
  what was published while a subscriber was down, or while Redis dropped a slow
  subscriber for exceeding its output buffer, is gone.
* ``streams``: ``XREAD BLOCK`` on one stream from ``0-0`` (every service reads
  everything, like revocast's manual assignment; replayable up to the stream's
  ``MAXLEN``).

On a dump message (sent by the harness after the last event of a step, so it
arrives after all of them: both paths keep order), the peer writes what it
applied since the previous dump to ``path`` atomically: ``[id, published_ns,
applied_ns]`` per event, plus its CPU time (``getrusage``). Latency is therefore
measured from what the peer itself reports, as revocast's is from its receipts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

__all__ = ["main"]


class _Peer:
    def __init__(self, service: str) -> None:
        self.service = service
        self.sessions: dict[str, float] = {}
        self.applied: list[tuple[str, int, int]] = []
        self.total = 0

    def handle(self, data: bytes) -> None:
        msg: dict[str, Any] = json.loads(data)
        if "ctl" in msg:
            # Every peer sees every control message; each answers only its own.
            if msg["ctl"] == "dump" and msg.get("for") == self.service:
                self.dump(Path(msg["path"]))
            return
        # A join, as revocast's state is: the later expiry wins.
        sid = msg["sid"]
        self.sessions[sid] = max(self.sessions.get(sid, 0.0), msg["exp"])
        self.applied.append((msg["id"], msg["t"], time.time_ns()))
        self.total += 1

    def dump(self, path: Path) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({
            "service": self.service,
            "applied": self.applied,
            "applied_total": self.total,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "state_entries": len(self.sessions),
        }))
        os.replace(tmp, path)
        self.applied = []


def _pubsub(client: redis.Redis, key: str, peer: _Peer, ready: Path) -> None:
    pubsub = client.pubsub()
    pubsub.subscribe(key)
    deadline = time.monotonic() + 20
    while True:
        msg = pubsub.get_message(timeout=1.0)
        if msg is not None and msg["type"] == "subscribe":
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"no subscribe confirmation for {key!r}")
    ready.write_text("ready")
    for msg in pubsub.listen():
        if msg["type"] == "message":
            peer.handle(msg["data"])


def _streams(client: redis.Redis, key: str, peer: _Peer, ready: Path) -> None:
    last: bytes | str = "0-0"
    first = True
    while True:
        # The first read does not block: once it returns, this peer has caught up.
        answer: Any = client.xread({key: last}, count=1000, block=None if first else 1000)
        for _stream, entries in answer or ():
            for entry_id, fields in entries:
                last = entry_id
                peer.handle(fields[b"d"])
        if first:
            first = False
            ready.write_text("ready")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peer")
    parser.add_argument("--mode", choices=("pubsub", "streams"), required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--key", required=True, help="channel (pubsub) or stream key")
    parser.add_argument("--service", required=True)
    parser.add_argument("--ready", type=Path, required=True, help="file written once ready")
    args = parser.parse_args(argv)
    client = redis.Redis.from_url(args.redis_url, socket_connect_timeout=10)
    peer = _Peer(args.service)
    if args.mode == "pubsub":
        _pubsub(client, args.key, peer, args.ready)
    else:
        _streams(client, args.key, peer, args.ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
