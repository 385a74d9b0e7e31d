"""The summary blocks of results.json, derived from the measured entries (pure functions).

* ``service_cpu_us_per_event``: per engine and config, the services' CPU per
  event per service (CPU seconds over the step's publish + drain window / (N x
  events)), with the engine's bare client's CPU per record measured in the same
  step on the same records, and their ratio;
* ``apply_rate_per_s``: replay apply rate of single-event records (and of batch
  records, once the publisher writes them);
* ``raw_consume_rate_per_s``: each engine's bare client replaying the same topic;
* ``bootstrap_ready_s``: a new instance's time to ready, cold (full replay) and from
  a snapshot (once snapshots bootstrap a consumer);
* ``peers``: the Redis peers' entries, and revocast's p99 over each peer's p99 at
  the same N and rate.

Nothing here reads a clock or a process: the same inputs give the same blocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "apply_rates",
    "bootstrap_ready",
    "p99_floor_ms",
    "peer_comparison",
    "raw_consume_rates",
    "service_cpu_per_event",
]


def p99_floor_ms(entry: Mapping[str, Any]) -> float | None:
    """When more than 1% of a step's events never got in force everywhere, the p99 over
    the complete ones flatters: the true p99 is at least the drain wait (those events were
    still missing when it ended). That floor, in ms; None when the p99 stands as measured."""
    events = entry.get("events") or 0
    missing = entry.get("incomplete_events") or 0
    if not events or missing <= 0.01 * events:
        return None
    return round(float(entry.get("drain_wait_s") or 0.0) * 1000, 1)


def _ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    return round(a / b, digits) if a is not None and b else None


def service_cpu_per_event(inforce: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``{engine: {"configs": {"N=1 R=1000": {...}}, "bare_client": name}}``."""
    out: dict[str, Any] = {}
    for entry in inforce.values():
        block = out.setdefault(entry["engine"], {"configs": {}})
        item: dict[str, Any] = {"service_us": entry.get("service_cpu_us_per_event"),
                                "n": entry["n"], "rate": entry["rate"]}
        bare = entry.get("bare_client")
        if bare:
            block["bare_client"] = bare["client"]
            events = entry.get("events") or 0
            per_event = bare.get("cpu_us_per_event")
            if per_event is None and events and bare.get("cpu_s") is not None:
                per_event = round(bare["cpu_s"] / events * 1e6, 1)
            item["bare_client_us"] = per_event
            item["bare_client_us_per_record"] = bare.get("cpu_us_per_record")
            item["bare_client_records"] = bare.get("records")
            item["service_over_bare"] = _ratio(item["service_us"], item["bare_client_us"])
        block["configs"][f"N={entry['n']} R={entry['rate']}"] = item
    for block in out.values():
        block["definition"] = (
            "service_us: CPU seconds of the N services over the step (publish + drain) / "
            "(N x events), idle polling included; bare_client_us: getrusage of the engine's "
            "bare client (assign every partition, count records) over the same step and "
            "records, per event of the step (a batch record carries several events)"
        )
    return out


def apply_rates(bootstrap: Mapping[str, Any]) -> dict[str, Any]:
    single: dict[str, Any] = {}
    for size in bootstrap.get("sizes") or []:
        ap = size.get("apply") or {}
        if ap.get("rate_per_s") is not None:
            block = single.setdefault(str(size["size"]), {})
            block["kafka-python"] = ap["rate_per_s"]
            block["complete"] = ap.get("complete")
            for eng, other in (size.get("apply_by_engine") or {}).items():
                block[eng] = other.get("rate_per_s") if "error" not in other else None
    batch = bootstrap.get("batch_records") or {}
    if batch.get("events_per_s") is not None:
        batch_block: dict[str, Any] = {
            str(batch["events"]): {"kafka-python": batch["events_per_s"],
                                   "events_per_record": batch["events_per_record"],
                                   "complete": (batch.get("apply") or {}).get("complete")}}
    else:
        batch_block = {"error": batch.get("error") or (batch.get("apply") or {}).get("error")
                       or "not measured"}
    return {
        "single_records": single or {"error": "not measured"},
        "batch_records": batch_block,
        "definition": "events applied per second by a RevocationConsumer replaying the "
        "retained topic from the start (verify + decode + apply), keyed by retained events; "
        "batch records: the same events, events_per_record of them under one signature",
    }


def raw_consume_rates(bootstrap: Mapping[str, Any]) -> dict[str, Any]:
    for size in bootstrap.get("sizes") or []:
        by_client = size.get("raw_by_client")
        if by_client:
            return {
                "size": size["size"],
                **{c: r.get("rate_per_s") for c, r in by_client.items()},
                "definition": "records/s of each engine's bare client replaying the same "
                "topic (assign every partition, count records, nothing else)",
            }
    return {"error": "not measured"}


def bootstrap_ready(bootstrap: Mapping[str, Any]) -> dict[str, Any]:
    cold: dict[str, Any] = {}
    snapshot: dict[str, Any] = {}
    for size in bootstrap.get("sizes") or []:
        ap = size.get("apply") or {}
        if ap:
            cold[str(size["size"])] = ap.get("elapsed_s") if ap.get("complete") else None
        warm = size.get("apply_from_snapshot") or {}
        if warm.get("from_snapshot") and warm.get("complete"):
            snapshot[str(size["size"])] = warm.get("elapsed_s")
        elif warm:
            snapshot[str(size["size"])] = None
            snapshot["error"] = warm.get("error") or "the second replay did not start from a " \
                "snapshot (none was saved, or it was refused)"
    return {
        "cold": cold or {"error": "not measured"},
        "snapshot": snapshot or {"error": "not measured"},
        "definition": "seconds from start() until ready (every retained record applied)",
    }


def peer_comparison(
    inforce: Mapping[str, Mapping[str, Any]], peers: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """revocast p99 / peer p99 for every (engine, peer) measured at the same N and rate."""
    out: dict[str, Any] = {}
    for peer in peers.values():
        for entry in inforce.values():
            if (entry["n"], entry["rate"]) != (peer["n"], peer["rate"]):
                continue
            key = f"N={peer['n']} R={peer['rate']}"
            out.setdefault(key, {})[f"{entry['engine']} / {peer['engine']}"] = {
                "revocast_p99_ms": entry.get("p99_ms"),
                "peer_p99_ms": peer.get("p99_ms"),
                "ratio": _ratio(entry.get("p99_ms"), peer.get("p99_ms")),
                "peer_incomplete_events": peer.get("incomplete_events"),
            }
    return out
