"""Peers: Redis pub/sub fan-out and Redis Streams, at the same N and rates as revocast.

What a team would build instead of revocast, measured in the same run, on the
same machine, with the same pacing (:func:`bench.load.publish_paced`) and the
same statistics (:func:`bench.stats.in_force_everywhere`):

* ``redis-pubsub``: the publisher ``PUBLISH``es each revocation (one pipeline
  per batch of due events) to a channel; N peer processes (:mod:`bench.peer`)
  subscribe and apply it to an in-process cache (a dict of revoked session ids).
  No replay, no signatures, no receipts: a subscriber that is down or too slow
  loses messages for good.
* ``redis-streams``: the publisher ``XADD``s to a stream (approximate
  ``MAXLEN``); N peers ``XREAD BLOCK`` it from the beginning. Replayable within
  the stream's length; no signatures, no receipts.

Each event's ``published_at_ns`` is stamped just before it is serialised, as
revocast's envelope stamps it just before signing. After a step the harness
sends a dump message behind the last event; each peer answers with what it
applied and when (so the drain is in band), and the in-force-everywhere latency
per event is the maximum over the N peers, exactly as for revocast.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from bench.load import EventFactory, Sender, SendResult, publish_paced
from bench.plan import RateStep
from bench.processes import Child
from bench.stats import in_force_everywhere
from bench.sweep import StepResult, SweepContext, cpu_cores, step_entry
from schemas import SessionRevoked

__all__ = ["PEER_MODES", "run_peer_sweep"]

PEER_MODES = {"redis-pubsub": "pubsub", "redis-streams": "streams"}
STREAM_MAXLEN = 1_000_000


def _sender(client: redis.Redis, mode: str, key: str) -> Sender:
    def send(events: list[SessionRevoked]) -> SendResult:
        pipe = client.pipeline(transaction=False)
        sent: list[tuple[uuid.UUID, int, int, int]] = []
        for event in events:
            event_id = uuid.uuid4()
            t = time.time_ns()
            payload = json.dumps({"id": event_id.hex, "t": t, "sid": event.session_id,
                                  "exp": event.expires_at.timestamp()})
            if mode == "pubsub":
                pipe.publish(key, payload)
            else:
                pipe.xadd(key, {"d": payload}, maxlen=STREAM_MAXLEN, approximate=True)
            sent.append((event_id, t, -1, -1))
        try:
            pipe.execute()
        except redis.RedisError:
            return SendResult([], len(events))
        return SendResult(sent)

    return send


class _PeerGroup:
    def __init__(self, ctx: SweepContext, peer: str, n: int) -> None:
        self.ctx = ctx
        self.mode = PEER_MODES[peer]
        self.peer = peer
        self.n = n
        self.key = f"bench:{ctx.run_id}:{peer}:n{n}:{next(ctx.counter)}"
        self.dir = ctx.out_dir / "logs" / self.key.replace(":", "-")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.services = [f"svc{i}" for i in range(1, n + 1)]
        self.members: dict[str, Child] = {}
        self.dumps = 0

    def start(self, timeout: float) -> None:
        assert self.ctx.redis_url is not None
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
        for service in self.services:
            cmd = [sys.executable, "-m", "bench.peer", "--mode", self.mode,
                   "--redis-url", self.ctx.redis_url, "--key", self.key,
                   "--service", service, "--ready", str(self.dir / f"{service}.ready")]
            self.members[service] = self.ctx.children.start(
                Child(f"{self.peer}:{service}", cmd, env=env,
                      log_path=self.dir / f"{service}.log"))
        deadline = time.monotonic() + timeout
        while not all((self.dir / f"{s}.ready").is_file() for s in self.services):
            dead = [c for c in self.members.values() if not c.alive]
            if dead:
                raise RuntimeError(f"{dead[0].name} exited: {dead[0].log_tail(4)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.peer}: peers not ready after {timeout:g} s")
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        return sum(c.cpu_seconds() or 0.0 for c in self.members.values())

    def dump(self, client: redis.Redis, timeout: float) -> tuple[dict[str, Any], str, float]:
        """Ask every peer for what it applied since the last dump; wait for all answers."""
        self.dumps += 1
        paths = {s: self.dir / f"dump-{self.dumps}-{s}.json" for s in self.services}
        begin = time.monotonic()
        # One dump message per service, so each writes its own file; all go behind the events.
        for service, path in paths.items():
            msg = json.dumps({"ctl": "dump", "path": str(path), "for": service})
            if self.mode == "pubsub":
                client.publish(self.key, msg)
            else:
                client.xadd(self.key, {"d": msg}, maxlen=STREAM_MAXLEN, approximate=True)
        out: dict[str, Any] = {}
        reason = "timeout"
        while time.monotonic() - begin < timeout:
            for service, path in paths.items():
                if service not in out and path.is_file():
                    out[service] = json.loads(path.read_text())
            if len(out) == len(paths):
                reason = "complete"
                break
            time.sleep(0.05)
        return out, reason, time.monotonic() - begin

    def stop(self) -> None:
        for child in self.members.values():
            child.stop(5)
        self.ctx.children.items = [c for c in self.ctx.children.items
                                   if c not in self.members.values()]


def _step(ctx: SweepContext, group: _PeerGroup, client: redis.Redis, step: RateStep,
          *, record: bool) -> StepResult | None:
    plan = ctx.plan
    factory = EventFactory(f"{group.key}-r{step.label}", seed=plan.seed + group.n)
    task = ctx.ui.task(f"{group.peer} N={group.n} R={step.label}: publishing",
                       total=step.planned_events)
    before = {"wall": time.monotonic(), "services": group.cpu_seconds(), "broker": 0.0,
              "harness": 0.0}
    outcome = publish_paced(_sender(client, group.mode, group.key), step, factory,
                            max_batch=plan.max_batch, on_progress=task.update)
    task.reset(f"{group.peer} N={group.n} R={step.label}: waiting for the peers", total=None)
    dumps, reason, waited = group.dump(client, plan.drain_timeout)
    after = {"wall": time.monotonic(), "services": group.cpu_seconds(), "broker": 0.0,
             "harness": 0.0}
    task.done()
    if not record:
        return None
    # Peers' ids are hex strings; the published map is keyed by UUID.
    receipts = (
        (uuid.UUID(event_id), service, applied - published)
        for service, dump in dumps.items()
        for event_id, published, applied in dump["applied"]
    )
    result = in_force_everywhere(outcome.published, receipts, group.services)
    cpu = cpu_cores(before, after)
    cpu.pop("broker_cores", None)
    cpu.pop("harness_cores", None)
    cpu["total_cores"] = cpu.get("services_cores")
    drain = {"drain": reason, "drain_wait_s": round(waited, 3),
             "peers_answered": len(dumps)}
    entry = step_entry(group.peer, group.n, step, outcome, result, cpu, drain)
    entry["kind"] = "peer"
    return StepResult(group.peer, group.n, step, entry, result)


def run_peer_sweep(ctx: SweepContext, peer: str,
                   on_result: Callable[[StepResult], None]) -> None:
    """Every group of the plan (same N, same steps as the engines) on ``peer``."""
    if ctx.redis_url is None:
        raise RuntimeError("peers need Redis: no REDIS_URL")
    client = redis.Redis.from_url(ctx.redis_url, socket_timeout=30, socket_connect_timeout=10)
    try:
        for n, steps in ctx.plan.groups():
            group = _PeerGroup(ctx, peer, n)
            try:
                group.start(ctx.plan.ready_timeout)
                if ctx.plan.warmup is not None:
                    _step(ctx, group, client, ctx.plan.warmup, record=False)
                for step in steps:
                    result = _step(ctx, group, client, step, record=True)
                    if result is not None:
                        on_result(result)
            finally:
                group.stop()
                if group.mode == "streams":
                    client.delete(group.key)
    finally:
        client.close()

