"""How long a revoked credential stays usable, per session model.

* **Stateless JWT (computed, not measured).** A JWT cannot be revoked: once
  revoked, it stays valid for the rest of its lifetime. :func:`simulate_jwt_exposure`
  issues many tokens uniformly over time, each with a TTL drawn from the given
  list, revokes at uniformly random instants, and for every token still valid at
  that instant records the lifetime it has left. The result is the distribution
  of the exposure window; in steady state it is uniform on ``(0, TTL]`` for each
  TTL (mean TTL/2). No clock is read: it is arithmetic on simulated times.
* **Polling a revocation list every P seconds (measured)**: see
  :mod:`bench.poller`, a real process polling a list in Redis.
* **Redis lookup per request (measured)**: the window is the write's round trip;
  the cost is a round trip on every request (see :mod:`bench.checkcost`).
* **revocast (measured)**: the "in force everywhere" latency from receipts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["simulate_jwt_exposure", "summarize_seconds"]


def simulate_jwt_exposure(
    ttls_s: Sequence[float], tokens: int, *, seed: int = 0, horizon_factor: float = 4.0
) -> np.ndarray:
    """Exposure windows (seconds) of ``tokens`` revoked-while-valid JWTs.

    Each simulated token gets a TTL drawn uniformly from ``ttls_s`` and an issue
    time uniform on ``[0, H)`` with ``H = horizon_factor * max(ttls_s)``; each is
    paired with a revocation instant uniform on ``[max TTL, H)`` (so every token
    that could be valid at that instant was issued inside the simulated span). A
    token valid at its revocation instant contributes ``issued + ttl - revoked``;
    the others are discarded. Draws repeat until ``tokens`` windows are collected
    (bounded: at most 1000 rounds).
    """
    if tokens <= 0:
        raise ValueError("tokens must be positive")
    ttls = np.asarray(ttls_s, dtype=np.float64)
    if ttls.size == 0 or np.any(ttls <= 0):
        raise ValueError("TTLs must be positive seconds")
    if horizon_factor <= 1.0:
        raise ValueError("horizon_factor must be > 1")
    rng = np.random.default_rng(seed)
    longest = float(ttls.max())
    horizon = horizon_factor * longest
    chunks: list[np.ndarray] = []
    collected = 0
    for _ in range(1000):
        draw = max(1024, int((tokens - collected) * horizon / float(ttls.mean()) * 1.2))
        ttl = rng.choice(ttls, size=draw)
        issued = rng.uniform(0.0, horizon, size=draw)
        revoked = rng.uniform(longest, horizon, size=draw)
        live = (issued <= revoked) & (revoked < issued + ttl)
        window = (issued + ttl - revoked)[live]
        chunks.append(window)
        collected += int(window.size)
        if collected >= tokens:
            break
    windows = np.concatenate(chunks)[:tokens]
    if windows.size < tokens:
        raise RuntimeError(f"simulation produced {windows.size} of {tokens} windows")
    return windows


def summarize_seconds(values: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """``count, mean_s, p50_s, p90_s, p99_s, max_s`` of a sample (nearest-rank)."""
    arr = np.sort(np.asarray(values, dtype=np.float64))
    if arr.size == 0:
        return {"count": 0, "mean_s": None, "p50_s": None, "p90_s": None, "p99_s": None,
                "max_s": None, "min_s": None}

    def pct(p: float) -> float:
        rank = max(1, int(np.ceil(p / 100.0 * arr.size)))
        return float(arr[min(rank, arr.size) - 1])

    return {
        "count": int(arr.size),
        "mean_s": round(float(arr.mean()), 6),
        "min_s": round(float(arr[0]), 6),
        "p50_s": round(pct(50), 6),
        "p90_s": round(pct(90), 6),
        "p99_s": round(pct(99), 6),
        "max_s": round(float(arr[-1]), 6),
    }
