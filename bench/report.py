"""results.json (shape, targets, findings) and results.md.

The targets are reported, never asserted:

* in force everywhere p99 at 1,000 events/s across 8 services <= 2x Kafka's own
  EndToEndLatency p99 measured in the same run (10 ms when that was not measured);
* service CPU per live event at 1,000/s <= 1.3x the engine's bare client's cost
  at the same rate (confluent: <= 120 us);
* revocast p99 <= 2x Redis pub/sub fan-out p99 at the same N and rate;
* an in-process check >= 30x cheaper than a Redis round trip;
* apply rate >= 80 % of kafka-python's raw consume rate;
* a new instance ready in <= 90 s cold with 1M retained revocations.

Where one is missed, :func:`findings` says where the time went, from what this
run measured: CPU use per step, the consumer's per-event cost (bootstrap replay),
and the profiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench import derive
from bench.derive import p99_floor_ms

__all__ = [
    "REQUIRED_TOP_LEVEL",
    "SCHEMA",
    "TARGETS",
    "evaluate_targets",
    "findings",
    "main",
    "render_markdown",
    "validate_results",
]

SCHEMA = "revocast-bench/1"

TARGETS: dict[str, dict[str, Any]] = {
    "in_force_p99_ms": {
        "limit": 10.0,
        "e2e_factor": 2.0,
        "at": {"n": 8, "rate": "1000"},
        "text": "in force everywhere p99 at 1,000/s across 8 services <= 2x Kafka's "
        "EndToEndLatency p99 (same run)",
    },
    "service_cpu": {"factor": 1.3, "confluent_us": 120.0, "rate": "1000",
                    "text": "service CPU per live event at 1,000/s <= 1.3x the bare client's "
                    "(confluent: <= 120 us)"},
    "vs_pubsub": {"factor": 2.0, "peer": "redis-pubsub",
                  "text": "revocast p99 <= 2x Redis pub/sub fan-out p99, same N and rate"},
    "batch_vs_raw": {"limit": 0.6,
                     "text": "apply rate of batch records (events/s) >= 60% of the raw consume "
                     "rate (records/s, same client)"},
    "bootstrap_cold_s": {"limit": 90.0, "size": "1000000",
                         "text": "new instance ready with 1M retained revocations <= 90 s cold"},
    "check_ratio": {"limit": 30.0, "text": "in-process check >= 30x cheaper than Redis"},
    "apply_vs_raw": {"limit": 0.8, "text": "apply rate >= 80% of raw consume rate"},
}

REQUIRED_TOP_LEVEL = (
    "schema",
    "mode",
    "environment",
    "settings",
    "in_force_everywhere",
    "check_ns",
    "raw_kafka_e2e_ms",
    "apply_vs_raw",
    "service_cpu_us_per_event",
    "apply_rate_per_s",
    "raw_consume_rate_per_s",
    "bootstrap_ready_s",
    "bootstrap",
    "peers",
    "from_idp_ms",
    "exposure",
    "targets",
    "findings",
)

_ENTRY_KEYS = ("engine", "n", "rate", "p50_ms", "p99_ms", "max_ms", "events", "achieved_rate",
               "per_service")


def validate_results(data: Mapping[str, Any]) -> list[str]:
    """Problems with the shape of a results.json document (empty when it is sound)."""
    problems: list[str] = []
    for key in REQUIRED_TOP_LEVEL:
        if key not in data:
            problems.append(f"missing top-level key {key!r}")
    if data.get("schema") not in (None, SCHEMA) and "schema" in data:
        problems.append(f"schema is {data.get('schema')!r}, expected {SCHEMA!r}")
    inforce = data.get("in_force_everywhere")
    if not isinstance(inforce, Mapping) or not inforce:
        problems.append("in_force_everywhere must be a non-empty object keyed by config")
    else:
        for key, entry in inforce.items():
            if not isinstance(entry, Mapping):
                problems.append(f"in_force_everywhere[{key!r}] is not an object")
                continue
            for field in _ENTRY_KEYS:
                if field not in entry:
                    problems.append(f"in_force_everywhere[{key!r}] lacks {field!r}")
            for field in ("p50_ms", "p99_ms", "max_ms"):
                value = entry.get(field)
                if value is not None and not isinstance(value, int | float):
                    problems.append(f"in_force_everywhere[{key!r}].{field} is not a number")
            p50, p99, mx = entry.get("p50_ms"), entry.get("p99_ms"), entry.get("max_ms")
            numbers = [v for v in (p50, p99, mx) if isinstance(v, int | float)]
            if len(numbers) == 3 and not numbers[0] <= numbers[1] <= numbers[2]:
                problems.append(f"in_force_everywhere[{key!r}]: p50 <= p99 <= max violated")
            per_service = entry.get("per_service")
            if isinstance(per_service, Mapping) and len(per_service) != entry.get("n"):
                problems.append(f"in_force_everywhere[{key!r}]: per_service has not N entries")
    check = data.get("check_ns")
    if not isinstance(check, Mapping):
        problems.append("check_ns must be an object")
    else:
        for field in ("inprocess_p50", "redis_p50"):
            if field not in check:
                problems.append(f"check_ns lacks {field!r}")
    e2e = data.get("raw_kafka_e2e_ms")
    if not isinstance(e2e, Mapping):
        problems.append("raw_kafka_e2e_ms must be an object")
    elif "error" not in e2e:
        for field in ("p50", "p99"):
            if field not in e2e:
                problems.append(f"raw_kafka_e2e_ms lacks {field!r}")
    env = data.get("environment")
    if isinstance(env, Mapping):
        for field in ("date", "cores", "python", "kafka_version"):
            if field not in env:
                problems.append(f"environment lacks {field!r}")
    return problems


def _headline_entry(
    inforce: Mapping[str, Mapping[str, Any]], engine: str, n: int, rate: str
) -> Mapping[str, Any] | None:
    for entry in inforce.values():
        if entry.get("engine") == engine and entry.get("n") == n and entry.get("rate") == rate:
            return entry
    return None


def evaluate_targets(
    inforce: Mapping[str, Mapping[str, Any]],
    check_ns: Mapping[str, Any],
    apply_vs_raw: Mapping[str, Any],
    headline: tuple[int, int],
    *,
    e2e: Mapping[str, Any] | None = None,
    cpu: Mapping[str, Any] | None = None,
    peers_vs: Mapping[str, Any] | None = None,
    ready: Mapping[str, Any] | None = None,
    apply_rates: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n, rate = headline
    target = TARGETS["in_force_p99_ms"]
    e2e_p99 = (e2e or {}).get("p99")
    limit = target["e2e_factor"] * e2e_p99 if e2e_p99 else target["limit"]
    per_engine = {}
    for engine in sorted({str(e.get("engine")) for e in inforce.values()}):
        entry = _headline_entry(inforce, str(engine), n, str(rate))
        if entry is None:
            continue
        p99 = entry.get("p99_ms")
        per_engine[str(engine)] = {
            "p99_ms": p99,
            "met": p99 is not None and p99 <= limit and not entry["incomplete_events"],
            "incomplete_events": entry.get("incomplete_events"),
        }
    out["in_force_p99_ms"] = {
        "target": target["text"],
        "limit": round(limit, 3),
        "limit_from": "2 x raw_kafka_e2e_ms.p99" if e2e_p99 else "10 ms (no e2e figure)",
        "measured_at": {"n": n, "rate": rate},
        "matches_target_config": (n, str(rate)) == (8, "1000"),
        "by_engine": per_engine,
    }
    ratio = check_ns.get("ratio")
    out["check_ratio"] = {
        "target": TARGETS["check_ratio"]["text"],
        "limit": TARGETS["check_ratio"]["limit"],
        "measured": ratio,
        "met": ratio is not None and ratio >= TARGETS["check_ratio"]["limit"],
    }
    measured = apply_vs_raw.get("ratio")
    out["apply_vs_raw"] = {
        "target": TARGETS["apply_vs_raw"]["text"],
        "limit": TARGETS["apply_vs_raw"]["limit"],
        "measured": measured,
        "met": measured is not None and measured >= TARGETS["apply_vs_raw"]["limit"],
    }
    t = TARGETS["service_cpu"]
    by_engine: dict[str, Any] = {}
    for engine, block in (cpu or {}).items():
        for item in block.get("configs", {}).values():
            if item.get("rate") != t["rate"] or item.get("bare_client_us") is None:
                continue
            service_us = item.get("service_us")
            lim = t["confluent_us"] if engine == "confluent" else t["factor"] * item[
                "bare_client_us"]
            by_engine[engine] = {"service_us": service_us, "bare_client_us":
                                 item["bare_client_us"], "limit_us": round(lim, 1),
                                 "met": service_us is not None and service_us <= lim}
    out["service_cpu"] = {"target": t["text"], "by_engine": by_engine}
    t = TARGETS["vs_pubsub"]
    by_engine = {}
    for config, pairs in (peers_vs or {}).items():
        for pair, v in pairs.items():
            engine, _, peer = pair.partition(" / ")
            if peer != t["peer"] or v.get("ratio") is None:
                continue
            worst = by_engine.get(engine)
            if worst is None or v["ratio"] > worst["ratio"]:
                by_engine[engine] = {"config": config, "ratio": v["ratio"],
                                     "met": v["ratio"] <= t["factor"]}
    out["vs_pubsub"] = {"target": t["text"], "by_engine": by_engine,
                        "note": "the worst ratio over every N and rate both ran"}
    t = TARGETS["batch_vs_raw"]
    batch = ((apply_rates or {}).get("batch_records") or {})
    batch_rate = next((v.get("kafka-python") for v in batch.values() if isinstance(v, Mapping)),
                      None)
    raw_rate = apply_vs_raw.get("raw_rate")
    ratio_b = round(batch_rate / raw_rate, 4) if batch_rate and raw_rate else None
    out["batch_vs_raw"] = {"target": t["text"], "limit": t["limit"], "measured": ratio_b,
                           "met": ratio_b is not None and ratio_b >= t["limit"]}
    t = TARGETS["bootstrap_cold_s"]
    cold = (ready or {}).get("cold") or {}
    seconds = cold.get(t["size"]) if isinstance(cold, Mapping) else None
    out["bootstrap_cold_s"] = {
        "target": t["text"], "limit": t["limit"], "measured": seconds,
        "met": seconds is not None and seconds <= t["limit"],
        "measured_size": t["size"] if t["size"] in cold else None,
    }
    return out


def _top_self(profile: Mapping[str, Any] | None, limit: int = 5) -> str:
    if not profile or not profile.get("self"):
        return ""
    return ", ".join(f"{item['function']} {item['share']:.0%}" for item in profile["self"][:limit])


def _inclusive(profile: Mapping[str, Any] | None, *needles: str) -> float | None:
    """Largest inclusive share of a function whose name contains every needle."""
    if not profile:
        return None
    best = None
    for item in profile.get("inclusive", []):
        if all(needle in item["function"] for needle in needles):
            best = item["share"] if best is None else max(best, item["share"])
    return best


def _consumer_thread(
    profile: Mapping[str, Any] | None,
) -> tuple[str, Mapping[str, Any]] | None:
    """The applying thread's block of a py-spy summary (kafka-python consumer or faust loop)."""
    if not profile or not profile.get("threads"):
        return None
    threads = profile["threads"]
    for name, block in threads.items():
        if "consumer" in name:
            return name, block
    name = max(threads, key=lambda k: threads[k].get("busy_share", 0))
    return name, threads[name]


def _per_event_us(bootstrap: Mapping[str, Any]) -> float | None:
    """CPU us per applied event, from the fastest (least disturbed) replay."""
    per_event = None
    for s in bootstrap.get("sizes") or []:
        apply_rate = (s.get("apply") or {}).get("rate_per_s")
        if apply_rate and (per_event is None or 1e6 / apply_rate < per_event):
            per_event = 1e6 / apply_rate
    return per_event


def findings(results: Mapping[str, Any], headline: tuple[int, int]) -> list[str]:
    """Plain-language statements, each backed by a figure of this run."""
    out: list[str] = []
    env = results.get("environment", {})
    cores = env.get("cores") or 0
    inforce: Mapping[str, Mapping[str, Any]] = results.get("in_force_everywhere", {})
    targets = results.get("targets", {})
    bootstrap = results.get("bootstrap", {})
    per_event_us = _per_event_us(bootstrap)
    profile = (bootstrap.get("apply_profile") or {}).get("top")

    n, rate = headline
    t_inforce = targets.get("in_force_p99_ms", {})
    for engine, t in t_inforce.get("by_engine", {}).items():
        entry = _headline_entry(inforce, engine, n, str(rate))
        if entry is None:
            continue
        cpu = entry.get("cpu", {})
        where = f"N={n}, R={rate}/s" + (
            "" if t_inforce.get("matches_target_config") else " (the quick run's headline)"
        )
        verdict = "meets" if t.get("met") else "misses"
        text = (
            f"{engine}: in force everywhere p99 {entry['p99_ms']} ms at {where} {verdict} the "
            f"target of {t_inforce.get('limit')} ms ({t_inforce.get('limit_from')}). During the "
            f"step the {n} services used "
            f"{cpu.get('services_cores')} cores, the broker {cpu.get('broker_cores')}, the "
            f"harness (publisher) {cpu.get('harness_cores')}: {cpu.get('total_cores')} of "
            f"{cores} cores."
        )
        if per_event_us and not t.get("met"):
            demand = n * rate * per_event_us / 1e6
            text += (
                f" One service spends ~{per_event_us:.0f} us per event on one thread (bootstrap "
                f"replay rate), so {n} services x {rate}/s need ~{demand:.1f} cores for "
                "applying alone"
            )
            others = (cpu.get("broker_cores") or 0) + (cpu.get("harness_cores") or 0)
            if demand >= cores:
                text += (
                    f", more than the machine's {cores} cores: events queue in every service "
                    "and the latency grows with the length of the step."
                )
            elif demand + others >= cores * 0.8:
                text += (
                    f", which with the broker and the publisher ({others:.2f} cores) is at the "
                    f"limit of the machine's {cores} cores: events queue in every service and "
                    "the latency grows with the length of the step."
                )
            else:
                text += "."
        consumer = _consumer_thread(entry.get("service_profile"))
        if consumer is not None and not t.get("met"):
            name, block = consumer
            tops = ", ".join(
                f"{item['function']} {item['share']:.0%}"
                for item in block["top"][:3]
                if item["function"] != "(blocked)"
            )
            text += (
                f" The live profile of {entry['service_profile'].get('service')} shows its "
                f"{name} thread, which applies every event one after the other, busy "
                f"{block['busy_share']:.0%} of the time (wall clock: {tops}): that one thread "
                "per service is the bottleneck."
            )
        if entry.get("max_lag_ms", 0) > 50:
            text += f" The publisher itself fell up to {entry['max_lag_ms']} ms behind schedule."
        out.append(text)
    if profile:
        verify = _inclusive(profile, "verify", "signing")
        fetch = _inclusive(profile, "fetch_records", "kafka")
        out.append(
            "Apply path (pyinstrument on the consumer loop during a replay): top self time "
            f"{_top_self(profile)}. Inclusive: signature verification (KeySet.verify, pyjwt + "
            f"Ed25519) {verify or 0:.0%}, kafka-python fetch and record parsing "
            f"{fetch or 0:.0%}."
        )
    for size in bootstrap.get("sizes") or []:
        ap = size.get("apply") or {}
        if not ap:
            continue
        peak = (ap.get("peak_rss_kb") or 0) / 1024
        if ap.get("complete"):
            text = (
                f"Bootstrap of {size['size']:,} retained revocations: a new service is ready "
                f"after {ap.get('elapsed_s')} s ({ap.get('rate_per_s'):,.0f} events/s), peak "
                f"RSS {peak:.0f} MiB ({(ap.get('rss_growth_kb') or 0) / 1024:.0f} MiB for the "
                f"state and the consumer)."
            )
        else:
            text = (
                f"Bootstrap of {size['size']:,} retained revocations did NOT finish within "
                f"{ap.get('elapsed_s')} s: {ap.get('records', 0):,} of {size['size']:,} records "
                f"applied ({ap.get('rate_per_s'):,.0f}/s on average), peak RSS {peak:.0f} MiB."
            )
        late = _consumer_thread(ap.get("late_profile"))
        if late is not None:
            name, block = late
            tops = ", ".join(
                f"{item['function']} {item['share']:.0%}"
                for item in block["top"][:3]
                if item["function"] != "(blocked)"
            )
            text += (
                f" Sampled {ap['late_profile'].get('profiler', 'late in the replay')}: the "
                f"{name} thread was busy {block['busy_share']:.0%}, wall clock {tops}."
            )
        out.append(text)
    avr = targets.get("apply_vs_raw", {})
    raw_block = results.get("apply_vs_raw", {})
    if avr.get("measured") is not None:
        verdict = "meets" if avr.get("met") else "misses"
        out.append(
            f"Apply rate {raw_block.get('apply_rate'):,.0f}/s is {avr['measured']:.1%} of "
            f"kafka-python's raw consume rate {raw_block.get('raw_rate'):,.0f}/s ({verdict} the "
            "80% target). Both read the same records with kafka-python; the difference is "
            "verify + decode + apply, i.e. the consumer is CPU-bound on its own work, not on "
            "the Kafka client."
        )
    chk = targets.get("check_ratio", {})
    check = results.get("check_ns", {})
    if chk.get("measured") is not None:
        out.append(
            f"In-process check p50 {check.get('inprocess_p50')} ns vs Redis EXISTS round trip "
            f"p50 {check.get('redis_p50')} ns on loopback: {chk['measured']}x "
            f"({'meets' if chk.get('met') else 'misses'} the 30x target); a full rule check in "
            f"Redis (pipelined MGET) costs {check.get('redis_full_check_p50')} ns "
            f"({check.get('ratio_full_check')}x)."
        )
    e2e = results.get("raw_kafka_e2e_ms", {})
    low = _headline_entry(inforce, "kafka-python", 1, "100")
    if low and "p50" in e2e and low.get("p50_ms") is not None:
        out.append(
            f"Floor: Kafka's own end-to-end latency (Java tool, acks=all) p50 {e2e['p50']} ms / "
            f"p99 {e2e['p99']} ms (whole ms); revocast, 1 kafka-python service at 100/s: "
            f"p50 {low['p50_ms']} ms / p99 {low['p99_ms']} ms."
        )
    for entry in inforce.values():
        prof = entry.get("service_profile")
        if prof and prof.get("self"):
            busy = ", ".join(
                f"{name} {block['busy_share']:.0%}"
                for name, block in prof.get("threads", {}).items()
            )
            out.append(
                f"Live service profile ({entry['engine']} {prof.get('service')} at N="
                f"{entry['n']}, R={entry['rate']}; py-spy, every thread): CPU samples by "
                f"function {_top_self(prof)}; threads busy: {busy}."
            )
        elif prof and prof.get("error"):
            out.append(f"py-spy could not profile the live service: {prof['error']}")
    for engine, v in (targets.get("service_cpu") or {}).get("by_engine", {}).items():
        if v.get("met") or not v.get("bare_client_us"):
            continue
        extra = v["service_us"] - v["bare_client_us"]
        out.append(
            f"{engine}: a service spends {v['service_us']:,.0f} us of CPU per live event at "
            f"1,000/s, its bare Kafka client {v['bare_client_us']:,.0f} us per record in the "
            f"same step ({v['service_us'] / v['bare_client_us']:.1f}x; target 1.3x): the other "
            f"~{extra:,.0f} us are revocast's own per-event work (signature verification, "
            "decode, apply, one receipt produced per event)"
            + (f"; in a replay, {verify:.0%} of the consumer's time is signature verification "
               "(pyinstrument)." if (verify := _inclusive(profile, "verify", "signing")) else ".")
        )
    peers = (results.get("peers") or {}).get("entries") or {}
    for peer in peers.values():
        if (peer["n"], str(peer["rate"])) != (n, str(rate)):
            continue
        mine = [e for e in inforce.values() if (e["n"], str(e["rate"])) == (n, str(rate))]
        if not mine:
            continue
        ours = ", ".join(f"{e['engine']} {e.get('p99_ms')} ms" for e in mine)
        out.append(
            f"{peer['engine']} at N={n}, R={rate}/s: p99 {peer.get('p99_ms')} ms with "
            f"{peer.get('service_cpu_us_per_event')} us of CPU per event per peer (JSON decode "
            f"and a dict insert; no signature, no receipt, "
            f"{'no replay' if 'pubsub' in peer['engine'] else 'replay from the stream'}); "
            f"revocast in the same run: {ours}. The gap is the per-event CPU: at this rate "
            "revocast's services need more CPU than the machine has, the peers do not."
        )
    saturated = [
        e for e in inforce.values() if e.get("drain") != "complete" or e.get("incomplete_events")
    ]
    if saturated:
        names = ", ".join(f"{e['engine']} N={e['n']} R={e['rate']}" for e in saturated)
        out.append(
            f"Steps whose receipts did not all arrive within the drain timeout (backlog; the "
            f"services were restarted on fresh topics afterwards): {names}."
        )
    return out


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _p99_cell(entry: Mapping[str, Any]) -> str:
    floor = p99_floor_ms(entry)
    if floor is None:
        return _fmt(entry.get("p99_ms"))
    return f"> {_fmt(floor, 0)} ¹"


def _ms_from_s(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 60:
        return f"{value / 60:.1f} min"
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1000:.2f} ms"


def render_markdown(results: Mapping[str, Any]) -> str:
    env = results.get("environment", {})
    lines: list[str] = []
    add = lines.append
    add(f"# revocast benchmark ({results.get('mode')})")
    add("")
    add(
        f"{env.get('date')} - {env.get('cores')} cores ({env.get('cpu_model')}), "
        f"{env.get('memory_gib')} GiB, Python {env.get('python')}, Kafka "
        f"{env.get('kafka_version')} ({env.get('services_source')}), kafka-python "
        f"{env.get('kafka_python')}, faust-streaming {env.get('faust')}; all traffic on "
        "127.0.0.1; every service, the broker and the harness share the same cores "
        f"(1-minute load average at start {env.get('loadavg_at_start')}, at the end "
        f"{env.get('loadavg_at_end')}; per step in results.json). Run time "
        f"{_fmt(results.get('timings_s', {}).get('total'), 1)} s."
    )
    add("")
    add("## Targets (reported, not asserted)")
    add("")
    add("| target | measured | met |")
    add("| --- | --- | --- |")
    targets = results.get("targets", {})
    t = targets.get("in_force_p99_ms", {})
    for engine, v in t.get("by_engine", {}).items():
        at = t.get("measured_at", {})
        note = "" if t.get("matches_target_config") else " (quick mode: not the target config)"
        add(
            f"| {t.get('target')} | {engine}: p99 {_fmt(v.get('p99_ms'))} ms at N={at.get('n')}, "
            f"R={at.get('rate')}{note} | {'yes' if v.get('met') else '**no**'} |"
        )
    for key in ("check_ratio", "apply_vs_raw", "batch_vs_raw"):
        v = targets.get(key, {})
        measured = v.get("measured")
        shown = (
            f"{measured}x" if key == "check_ratio" and measured is not None
            else (f"{measured:.1%}" if measured is not None else "-")
        )
        add(f"| {v.get('target')} | {shown} | {'yes' if v.get('met') else '**no**'} |")
    t = targets.get("service_cpu", {})
    for engine, v in t.get("by_engine", {}).items():
        add(f"| {t.get('target')} | {engine}: {_fmt(v.get('service_us'), 0)} us vs bare "
            f"{_fmt(v.get('bare_client_us'), 0)} us (limit {_fmt(v.get('limit_us'), 0)} us) | "
            f"{'yes' if v.get('met') else '**no**'} |")
    t = targets.get("vs_pubsub", {})
    for engine, v in t.get("by_engine", {}).items():
        add(f"| {t.get('target')} | {engine}: {_fmt(v.get('ratio'))}x at {v.get('config')} "
            f"(the worst config) | {'yes' if v.get('met') else '**no**'} |")
    t = targets.get("bootstrap_cold_s", {})
    if t:
        shown = "not measured (no 1M replay in this run)" if t.get("measured") is None \
            else f"{_fmt(t.get('measured'))} s"
        add(f"| {t.get('target')} | {shown} | {'yes' if t.get('met') else '**no**'} |")
    add("")
    add("## In force everywhere (publish -> applied by all N services)")
    add("")
    steps = results.get("settings", {}).get("steps") or []
    plan_text = ", ".join(
        f"{s['rate']}/s for {s['duration_s']:g} s (at most {s['max_events']:,} events)"
        for s in steps
    )
    warmup = results.get("settings", {}).get("warmup")
    warm_text = (
        f" After its services are ready, each group first runs an unrecorded warm-up "
        f"({warmup['rate']}/s for {warmup['duration_s']:g} s)."
        if warmup else ""
    )
    add(
        "Latency per event = max over the N services of (applied_at_ns - published_at_ns), "
        "from the receipts. CPU = cores used over publish + drain. Steps, in this order on the "
        f"same N services: {plan_text}; where the services cannot keep up, the latency grows "
        f"with the step's length, so those figures describe a burst of that length.{warm_text}"
    )
    add("")
    add(
        "| engine | N | target rate /s | achieved rate /s | events | p50 ms | p99 ms | max ms | "
        "incomplete | drain | services cores | broker cores | harness cores |"
    )
    add("| --- " + "| ---: " * 8 + "| --- " + "| ---: " * 3 + "|")
    peer_entries = (results.get("peers") or {}).get("entries") or {}
    for entry in [*results.get("in_force_everywhere", {}).values(), *peer_entries.values()]:
        cpu = entry.get("cpu", {})
        add(
            f"| {entry['engine']} | {entry['n']} | {entry['rate']} | "
            f"{_fmt(entry.get('achieved_rate'), 0)} | {_fmt(entry.get('events'))} | "
            f"{_fmt(entry.get('p50_ms'))} | {_p99_cell(entry)} | "
            f"{_fmt(entry.get('max_ms'))} | {_fmt(entry.get('incomplete_events'))} | "
            f"{entry.get('drain')} | {_fmt(cpu.get('services_cores'))} | "
            f"{_fmt(cpu.get('broker_cores'))} | {_fmt(cpu.get('harness_cores'))} |"
        )
    if any(p99_floor_ms(e) is not None for e in [*results.get("in_force_everywhere", {})
                                                   .values(), *peer_entries.values()]):
        add("")
        add("¹ More than 1% of the step's events were still not applied everywhere when the "
            "drain ended: the p99 is at least the drain wait shown (the p50 and max are over "
            "the events that were).")
    add("")
    add("Per-service p50 / p99 (ms):")
    add("")
    for entry in results.get("in_force_everywhere", {}).values():
        per = ", ".join(
            f"{s} {_fmt(v.get('p50_ms'))}/{_fmt(v.get('p99_ms'))}"
            for s, v in entry.get("per_service", {}).items()
        )
        add(f"- {entry['engine']} N={entry['n']} R={entry['rate']}: {per}")
    add("")
    add("## Peers: Redis pub/sub and Redis Streams at the same N and rates")
    add("")
    add(
        "What a team would build instead, measured in the same run with the same pacing: "
        "the publisher PUBLISHes (pub/sub) or XADDs (Streams) each revocation as JSON; N peer "
        "processes apply it to the same in-process cache (bench.peer). No signatures, no "
        "receipts; pub/sub has no replay either. Their rows are in the table above; "
        "revocast p99 / peer p99 at each N and rate both ran:"
    )
    add("")
    add("| N, rate | revocast engine / peer | revocast p99 ms | peer p99 ms | ratio |")
    add("| --- | --- | ---: | ---: | ---: |")
    for config, pairs in ((results.get("peers") or {}).get("revocast_p99_over_peer_p99")
                          or {}).items():
        for pair, v in pairs.items():
            add(f"| {config} | {pair} | {_fmt(v.get('revocast_p99_ms'))} | "
                f"{_fmt(v.get('peer_p99_ms'))} | {_fmt(v.get('ratio'))} |")
    add("")
    idp = results.get("from_idp_ms") or {}
    add("## From the identity provider: SCIM and SSF push to in force everywhere")
    add("")
    if "error" in idp or not idp:
        add(f"not measured: {idp.get('error', 'not run')}")
    else:
        add(
            f"{idp.get('requests_per_kind')} requests of each kind, one after the other at "
            f"{idp.get('pace_per_s')}/s, against revocast serve-api's app (SCIM and SSF "
            f"mounted); {idp.get('services')} {idp.get('engine')} services. Measured from the "
            "IdP's request leaving: to its answer (sent only after Kafka acknowledged), and to "
            "the last service having applied the revocation (receipts)."
        )
        add("")
        add("| IdP request | requests | answer p50 ms | answer p99 ms | in force everywhere "
            "p50 ms | in force everywhere p99 ms | incomplete |")
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for label in ("scim", "ssf_push"):
            b = idp.get(label) or {}
            if not b:
                continue
            ans, eve = b["request_to_answer"], b["request_to_in_force_everywhere"]
            add(f"| {b.get('request')} | {_fmt(b.get('requests'))} | {_fmt(ans.get('p50_ms'))} | "
                f"{_fmt(ans.get('p99_ms'))} | {_fmt(eve.get('p50_ms'))} | "
                f"{_fmt(eve.get('p99_ms'))} | {_fmt(b.get('incomplete_events'))} |")
    add("")
    add("## Service CPU per event, beside the bare Kafka client")
    add("")
    add(
        "Service: CPU seconds of the N service processes over a step (publish + drain, idle "
        "polling included) / (N x events). Bare client: the engine's Kafka client alone "
        "(assign every partition, count records; getrusage), beside the first group, on the "
        "same topic and records, per event of the step (publish_many packs a partition's due "
        "events into one batch record, so there are fewer records than events)."
    )
    add("")
    add("| engine | N | rate /s | service us per event | bare client | bare us per event | "
        "bare records | service / bare |")
    add("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for engine, block in (results.get("service_cpu_us_per_event") or {}).items():
        for item in block.get("configs", {}).values():
            add(f"| {engine} | {item.get('n')} | {item.get('rate')} | "
                f"{_fmt(item.get('service_us'), 0)} | {block.get('bare_client', '-')} | "
                f"{_fmt(item.get('bare_client_us'), 0)} | "
                f"{_fmt(item.get('bare_client_records'))} | "
                f"{_fmt(item.get('service_over_bare'))} |")
    raw = results.get("raw_consume_rate_per_s") or {}
    rates = {k: v for k, v in raw.items() if k not in ("size", "definition", "error")}
    if rates:
        add("")
        add(f"Raw consume rate of each bare client replaying {_fmt(raw.get('size'))} retained "
            "records: " + ", ".join(f"{k} {_fmt(v, 0)}/s" for k, v in rates.items()) + ".")
    add("")
    check = results.get("check_ns", {})
    add("## Per-check cost")
    add("")
    if "error" in check:
        add(f"not measured: {check['error']}")
    else:
        add("| check | p50 ns | p99 ns |")
        add("| --- | ---: | ---: |")
        inproc = check.get("inprocess", {})
        red = check.get("redis", {})
        for label, block in (
            ("in-process RevocationState.check(), revoked (hit)", inproc.get("check_hit")),
            ("in-process RevocationState.check(), valid (miss)", inproc.get("check_miss")),
            ("in-process is_session_revoked (miss)", inproc.get("is_session_revoked_miss")),
            ("Redis EXISTS per request (hit)", red.get("exists_hit")),
            ("Redis EXISTS per request (miss)", red.get("exists_miss")),
            ("Redis full rule check, pipelined (miss)", red.get("full_check_miss")),
            ("Redis SET (revocation write -> visible)", red.get("write_visible")),
        ):
            if block:
                add(f"| {label} | {_fmt(block.get('p50'), 0)} | {_fmt(block.get('p99'), 0)} |")
        add("")
        add(
            f"Ratio Redis / in-process (p50, miss): **{check.get('ratio')}x** "
            f"(hit: {check.get('ratio_hit')}x; full rule check in Redis: "
            f"{check.get('ratio_full_check')}x). In-process figures are batch means of "
            f"{inproc.get('batch')} calls including ~{inproc.get('loop_overhead_ns')} ns of "
            "loop overhead."
        )
    add("")
    e2e = results.get("raw_kafka_e2e_ms", {})
    add("## Kafka's own end-to-end latency (the floor)")
    add("")
    if "error" in e2e:
        add(f"not measured: {e2e['error']}")
    else:
        add(
            f"`{e2e.get('tool')}`, {e2e.get('records')} records of {e2e.get('record_size')} B, "
            f"acks={e2e.get('acks')}: p50 **{e2e.get('p50')} ms**, p99 **{e2e.get('p99')} ms**, "
            f"p99.9 {e2e.get('p999')} ms, avg {e2e.get('avg')} ms (the tool truncates "
            "percentiles to whole ms)."
        )
    add("")
    add("## Exposure window after a revocation")
    add("")
    add("| model | kind | p50 | p99 | max | check per request us | note |")
    add("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for m in results.get("exposure", {}).get("models", []):
        cost = m.get("request_cost_ns")
        add(
            f"| {m['label']} | {m['kind']} | {_ms_from_s(m.get('p50_s'))} | "
            f"{_ms_from_s(m.get('p99_s'))} | {_ms_from_s(m.get('max_s'))} | "
            f"{'-' if cost is None else _fmt(cost / 1000, 1)} | {m.get('note', '')} |"
        )
    add("")
    boot = results.get("bootstrap", {})
    add("## Bootstrap: replaying retained revocations into a new service")
    add("")
    if "error" in boot:
        add(f"not measured: {boot['error']}")
    else:
        produce = boot.get("produce", {})
        add(
            f"Produced once: {_fmt(produce.get('distinct_events'))} signed events "
            f"({_fmt(produce.get('records_written'))} records over the topics) in "
            f"{_fmt(produce.get('elapsed_s'))} s (signing {_fmt(produce.get('sign_s'))} s with "
            f"{produce.get('sign_workers')} Python workers, loading {_fmt(produce.get('load_s'))} "
            "s with Kafka's ConsoleProducer)."
        )
        add("")
        add(
            "| retained | applied | apply time s | apply rate /s | peak RSS MiB | "
            "RSS growth MiB | entries | raw consume time s | raw rate /s | apply/raw |"
        )
        add("| ---: " * 10 + "|")
        for s in boot.get("sizes", []):
            ap, raw = s.get("apply", {}), s.get("raw", {})
            applied = _fmt(ap.get("records")) + ("" if ap.get("complete") else " (**not ready**)")
            add(
                f"| {_fmt(s.get('size'))} | {applied} | {_fmt(ap.get('elapsed_s'))} | "
                f"{_fmt(ap.get('rate_per_s'), 0)} | "
                f"{_fmt((ap.get('peak_rss_kb') or 0) / 1024, 1)} | "
                f"{_fmt((ap.get('rss_growth_kb') or 0) / 1024, 1)} | "
                f"{_fmt(ap.get('state_entries'))} | {_fmt(raw.get('elapsed_s'))} | "
                f"{_fmt(raw.get('rate_per_s'), 0)} | {_fmt(s.get('apply_vs_raw'), 3)} |"
            )
    add("")
    for s in boot.get("sizes", []) if isinstance(boot, Mapping) else []:
        warm = s.get("apply_from_snapshot") or {}
        if warm:
            add("")
            add(f"Ready from a snapshot ({_fmt(s.get('size'))} retained; the snapshot the "
                "replay above saved on stop, in Redis): "
                + (f"**{_fmt(warm.get('elapsed_s'))} s**, peak RSS "
                   f"{_fmt((warm.get('peak_rss_kb') or 0) / 1024, 0)} MiB."
                   if warm.get("from_snapshot") and warm.get("complete")
                   else f"not measured ({warm.get('error') or 'no snapshot was used'})."))
        for eng, other in (s.get("apply_by_engine") or {}).items():
            add("")
            add(f"Apply replay of {_fmt(s.get('size'))} on the {eng} engine: "
                + (f"{_fmt(other.get('rate_per_s'), 0)} records/s."
                   if other.get("rate_per_s") is not None else f"failed ({other.get('error')})."))
    batch = boot.get("batch_records") if isinstance(boot, Mapping) else None
    if batch:
        ap = batch.get("apply") or {}
        if batch.get("events_per_s") is not None:
            add("")
            add(f"Batch records: the first {_fmt(batch.get('events'))} of these events as "
                f"records of {batch.get('events_per_record')} events under one signature, "
                f"replayed by a new service in {_fmt(ap.get('elapsed_s'))} s: "
                f"**{_fmt(batch.get('events_per_s'), 0)} events/s**.")
        else:
            add("")
            add(f"Batch records: not measured ({batch.get('error') or ap.get('error')}).")
    add("")
    add("## Findings (where the time goes)")
    add("")
    for item in results.get("findings", []):
        add(f"- {item}")
    skipped = results.get("skipped") or []
    errors = results.get("errors") or []
    if skipped or errors:
        add("")
        add("## Skipped / failed parts")
        add("")
        for item in skipped:
            add(f"- skipped: {item}")
        for item in errors:
            add(f"- error: {item}")
    add("")
    add("## Files")
    add("")
    add("- `results.json`: every figure above, plus HdrHistograms (`hdr_in_force_us`, base64).")
    for plot in results.get("plots", []):
        add(f"- `{plot}`")
    for extra in results.get("profiles", []):
        add(f"- `{extra}`: raw profile (pyinstrument text, or py-spy collapsed stacks)")
    add("- `logs/`: every child process's output")
    add("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.report DIR``: re-derive the summary blocks, targets and findings from
    the measured entries, re-write results.json and results.md."""
    import json
    import sys
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.report DIR", file=sys.stderr)
        return 2
    path = Path(args[0]) / "results.json"
    results = json.loads(path.read_text())
    headline = (results["settings"]["headline"][0], results["settings"]["headline"][1])
    inforce = results["in_force_everywhere"]
    boot = results.get("bootstrap") if isinstance(results.get("bootstrap"), dict) else {}
    peer_entries = list(((results.get("peers") or {}).get("entries") or {}).values())
    results["service_cpu_us_per_event"] = derive.service_cpu_per_event(inforce)
    results["apply_rate_per_s"] = derive.apply_rates(boot)
    results["raw_consume_rate_per_s"] = derive.raw_consume_rates(boot)
    results["bootstrap_ready_s"] = derive.bootstrap_ready(boot)
    results.setdefault("peers", {})["revocast_p99_over_peer_p99"] = derive.peer_comparison(
        inforce, results["peers"].get("entries") or {})
    results["targets"] = evaluate_targets(
        inforce, results.get("check_ns", {}), results.get("apply_vs_raw", {}), headline,
        e2e=results.get("raw_kafka_e2e_ms"), cpu=results["service_cpu_us_per_event"],
        peers_vs=results["peers"]["revocast_p99_over_peer_p99"],
        ready=results["bootstrap_ready_s"], apply_rates=results["apply_rate_per_s"],
    )
    results["findings"] = findings(results, headline)
    from bench import plots  # matplotlib: only when re-drawing

    # Every plot but the per-service CDF (its raw latencies are not kept in results.json).
    entries = [*inforce.values(), *peer_entries]
    limit = results["targets"]["in_force_p99_ms"]["limit"]
    plots.plot_p99_vs_rate(entries, path.parent / "p99_vs_rate.png", limit)
    plots.plot_p99_vs_n(entries, path.parent / "p99_vs_n.png", limit)
    plots.plot_exposure(results.get("exposure", {}).get("models", []),
                        path.parent / "exposure_windows.png")
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    (path.parent / "results.md").write_text(render_markdown(results))
    for problem in validate_results(results):
        print(f"results shape: {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
