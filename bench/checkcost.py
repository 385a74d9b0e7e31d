"""What one revocation check costs: in-process :class:`RevocationState` vs Redis on loopback.

* **In-process**: :meth:`RevocationState.check` on a state holding
  ``state_size`` revoked sessions, for a token whose ``sid`` is revoked (hit,
  decided by the first rule) and for a valid token (miss: every rule is
  evaluated - the common case, and the most expensive). A single call is too
  short to time on its own (the timer costs about as much), so calls are timed in
  batches of :data:`BATCH` and each batch's mean is one sample. The loop and call
  overhead is *not* subtracted (reported separately as ``loop_overhead_ns``).
* **Redis**: :class:`consumers.RedisSessionLookup` (one ``EXISTS`` per request,
  the classic server-side-session baseline) and
  :class:`consumers.RedisRevocationStore` ``check`` (the same rules as the
  in-process check, one pipelined MGET+PEXPIRETIME round trip); each call timed
  on its own. ``write_visible`` is a ``SET`` round trip: how long a revocation
  takes to become visible to the next per-request lookup.

The ratio is Redis ``EXISTS`` (miss) over in-process ``check`` (miss): the
cheapest possible Redis lookup against the full in-process rule set.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis

from consumers import RedisRevocationStore, RedisSessionLookup, RevocationState
from schemas import Envelope, SessionRevoked, Subject, SubjectKind, in_seconds

__all__ = ["BATCH", "combine", "measure_inprocess", "measure_redis", "ns_summary"]

BATCH = 100


def ns_summary(samples: Sequence[float]) -> dict[str, Any]:
    """``count, p50, p90, p99, min, max, mean`` (ns, nearest-rank) of per-call samples."""
    ordered = sorted(samples)
    n = len(ordered)
    if not n:
        return {"count": 0}

    def pct(p: float) -> float:
        rank = max(1, math.ceil(p / 100.0 * n))
        return ordered[min(rank, n) - 1]

    return {
        "count": n,
        "p50": round(pct(50), 1),
        "p90": round(pct(90), 1),
        "p99": round(pct(99), 1),
        "min": round(ordered[0], 1),
        "max": round(ordered[-1], 1),
        "mean": round(sum(ordered) / n, 1),
    }


def _batched_ns(call: Callable[[Any], Any], inputs: Sequence[Any], iterations: int) -> list[float]:
    """Per-call ns, one sample per batch of :data:`BATCH` calls."""
    samples: list[float] = []
    perf = time.perf_counter_ns
    k = len(inputs)
    for start in range(0, iterations, BATCH):
        batch = [inputs[(start + j) % k] for j in range(BATCH)]
        t0 = perf()
        for item in batch:
            call(item)
        samples.append((perf() - t0) / BATCH)
    return samples


def measure_inprocess(state_size: int, iterations: int) -> dict[str, Any]:
    now = time.time()
    expires = now + 7200
    state = RevocationState()
    for i in range(state_size):
        state.add("sessions", f"s-{i}", expires)
    for i in range(state_size // 10):
        state.add("subjects", f"gone-{i}", expires, at=now)
    header = {"kid": "bench-key", "alg": "EdDSA"}
    hits = [
        {"sub": f"user-{i}", "sid": f"s-{i * 7 % state_size}", "jti": f"j-{i}", "iat": now - 60}
        for i in range(1000)
    ]
    misses = [
        {"sub": f"user-{i}", "sid": f"live-{i}", "jti": f"jl-{i}", "iat": now - 60,
         "azp": "web-client"}
        for i in range(1000)
    ]  # fmt: skip
    check = state.check
    # The measured calls must take the path they claim to take.
    if any(check(c, header).allowed for c in hits[:10]):
        raise RuntimeError("hit claims were allowed: the state is not what was built")
    if not all(check(c, header).allowed for c in misses[:10]):
        raise RuntimeError("miss claims were rejected: the state is not what was built")
    # Warm up, then measure.
    _batched_ns(lambda c: check(c, header), misses, 10 * BATCH)
    hit = _batched_ns(lambda c: check(c, header), hits, iterations)
    miss = _batched_ns(lambda c: check(c, header), misses, iterations)
    sids = [c["sid"] for c in misses]
    session_only = _batched_ns(state.is_session_revoked, sids, iterations)
    overhead = _batched_ns(lambda c: None, misses, iterations)
    return {
        "state_entries": len(state),
        "batch": BATCH,
        "check_hit": ns_summary(hit),
        "check_miss": ns_summary(miss),
        "is_session_revoked_miss": ns_summary(session_only),
        "loop_overhead_ns": ns_summary(overhead)["p50"],
    }


def _each_ns(call: Callable[[Any], Any], inputs: Sequence[Any], iterations: int) -> list[float]:
    samples: list[float] = []
    perf = time.perf_counter_ns
    k = len(inputs)
    for i in range(iterations):
        item = inputs[i % k]
        t0 = perf()
        call(item)
        samples.append(float(perf() - t0))
    return samples


def measure_redis(redis_url: str, state_size: int, iterations: int) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    run = uuid.uuid4().hex[:10]
    prefix = f"bench:{run}"
    lookup = RedisSessionLookup(client, prefix=f"{prefix}:sessions")
    store = RedisRevocationStore(client, "bench", prefix=prefix)
    now = time.time()
    try:
        client.ping()
        with client.pipeline(transaction=False) as pipe:
            for i in range(state_size):
                pipe.set(f"{prefix}:sessions:s-{i}", b"1", pxat=int((now + 7200) * 1000))
                if i % 1000 == 999:
                    pipe.execute()
            pipe.execute()
        for i in range(200):
            store.apply(
                Envelope.wrap(
                    SessionRevoked(
                        subject=Subject(id=f"user-{i}", kind=SubjectKind.HUMAN),
                        session_id=f"s-{i}",
                        expires_at=in_seconds(7200),
                    ),
                    issuer="bench",
                )
            )
        hit_sids = [f"s-{i * 7 % state_size}" for i in range(1000)]
        miss_sids = [f"live-{i}" for i in range(1000)]
        if not lookup.is_revoked(hit_sids[0]) or lookup.is_revoked(miss_sids[0]):
            raise RuntimeError("Redis lookups do not see the sessions just written")
        _each_ns(lookup.is_revoked, miss_sids, 200)  # warm up
        exists_hit = _each_ns(lookup.is_revoked, hit_sids, iterations)
        exists_miss = _each_ns(lookup.is_revoked, miss_sids, iterations)
        header = {"kid": "bench-key"}
        full_hit_claims = [
            {"sub": f"user-{i}", "sid": f"s-{i}", "iat": now - 60} for i in range(200)
        ]
        full_miss_claims = [
            {"sub": f"user-{i}", "sid": f"live-{i}", "jti": f"jl-{i}", "iat": now - 60,
             "azp": "web-client"}
            for i in range(200)
        ]  # fmt: skip
        if store.check(full_hit_claims[0], header).allowed:
            raise RuntimeError("the Redis store does not see the revocations just applied")
        full_hit = _each_ns(lambda c: store.check(c, header), full_hit_claims, iterations // 2)
        full_miss = _each_ns(lambda c: store.check(c, header), full_miss_claims, iterations // 2)
        writes = _each_ns(
            lambda i: lookup.revoke(f"w-{i}", now + 600), list(range(iterations)), iterations // 2
        )
    finally:
        try:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=5000))
            for start in range(0, len(keys), 5000):
                client.delete(*keys[start : start + 5000])
        finally:
            client.close()
    return {
        "redis_entries": state_size,
        "exists_hit": ns_summary(exists_hit),
        "exists_miss": ns_summary(exists_miss),
        "full_check_hit": ns_summary(full_hit),
        "full_check_miss": ns_summary(full_miss),
        "write_visible": ns_summary(writes),
    }


def combine(inproc: dict[str, Any], red: dict[str, Any]) -> dict[str, Any]:
    """The ``check_ns`` block of results.json."""
    inprocess_p50 = inproc["check_miss"]["p50"]
    redis_p50 = red["exists_miss"]["p50"]
    return {
        "inprocess_p50": inprocess_p50,
        "redis_p50": redis_p50,
        "ratio": round(redis_p50 / inprocess_p50, 1) if inprocess_p50 else None,
        "inprocess_hit_p50": inproc["check_hit"]["p50"],
        "inprocess_miss_p50": inprocess_p50,
        "inprocess_p99": inproc["check_miss"]["p99"],
        "redis_hit_p50": red["exists_hit"]["p50"],
        "redis_miss_p50": redis_p50,
        "redis_p99": red["exists_miss"]["p99"],
        "redis_full_check_p50": red["full_check_miss"]["p50"],
        "ratio_hit": (
            round(red["exists_hit"]["p50"] / inproc["check_hit"]["p50"], 1)
            if inproc["check_hit"]["p50"]
            else None
        ),
        "ratio_full_check": (
            round(red["full_check_miss"]["p50"] / inprocess_p50, 1) if inprocess_p50 else None
        ),
        "redis_write_visible_p50": red["write_visible"]["p50"],
        "definition": "inprocess = RevocationState.check() on a valid token (all rules "
        "evaluated), batch-mean per call, loop overhead included; redis = "
        "RedisSessionLookup.is_revoked (one EXISTS round trip on 127.0.0.1); ratio = "
        "redis_p50 / inprocess_p50",
        "inprocess": inproc,
        "redis": red,
    }
