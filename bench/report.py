"""results.json (shape, targets, findings) and results.md.

The targets are reported, never asserted:

* in force everywhere p99 <= 10 ms at 1,000 events/s across 8 services;
* an in-process check >= 30x cheaper than a Redis round trip;
* apply rate >= 80 % of kafka-python's raw consume rate.

Where one is missed, :func:`findings` says where the time went, from what this
run measured: CPU use per step, the consumer's per-event cost (bootstrap replay),
and the profiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
        "at": {"n": 8, "rate": "1000"},
        "text": "in force everywhere p99 <= 10 ms at 1,000/s across 8 services",
    },
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
    "bootstrap",
    "exposure",
    "targets",
    "findings",
)

_ENTRY_KEYS = ("flavor", "n", "rate", "p50_ms", "p99_ms", "max_ms", "events", "achieved_rate",
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
    inforce: Mapping[str, Mapping[str, Any]], flavor: str, n: int, rate: str
) -> Mapping[str, Any] | None:
    for entry in inforce.values():
        if entry.get("flavor") == flavor and entry.get("n") == n and entry.get("rate") == rate:
            return entry
    return None


def evaluate_targets(
    inforce: Mapping[str, Mapping[str, Any]],
    check_ns: Mapping[str, Any],
    apply_vs_raw: Mapping[str, Any],
    headline: tuple[int, int],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n, rate = headline
    target = TARGETS["in_force_p99_ms"]
    per_flavor = {}
    for flavor in sorted({str(e.get("flavor")) for e in inforce.values()}):
        entry = _headline_entry(inforce, str(flavor), n, str(rate))
        if entry is None:
            continue
        p99 = entry.get("p99_ms")
        per_flavor[str(flavor)] = {
            "p99_ms": p99,
            "met": p99 is not None and p99 <= target["limit"] and not entry["incomplete_events"],
            "incomplete_events": entry.get("incomplete_events"),
        }
    out["in_force_p99_ms"] = {
        "target": target["text"],
        "limit": target["limit"],
        "measured_at": {"n": n, "rate": rate},
        "matches_target_config": (n, str(rate)) == (8, "1000"),
        "by_flavor": per_flavor,
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


def _per_event_us(bootstrap: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """(CPU us per applied event, CRC-check us per record) from the replays."""
    sizes = bootstrap.get("sizes") or []
    per_event = crc = None
    for s in sizes:
        apply_rate = (s.get("apply") or {}).get("rate_per_s")
        if apply_rate and (per_event is None or 1e6 / apply_rate < per_event):
            per_event = 1e6 / apply_rate  # the fastest replay: the least disturbed one
        raw = (s.get("raw") or {}).get("rate_per_s")
        raw_no_crc = (s.get("raw_no_crc") or {}).get("rate_per_s")
        if raw and raw_no_crc and raw_no_crc > raw:
            crc = 1e6 / raw - 1e6 / raw_no_crc
    return per_event, crc


def findings(results: Mapping[str, Any], headline: tuple[int, int]) -> list[str]:
    """Plain-language statements, each backed by a figure of this run."""
    out: list[str] = []
    env = results.get("environment", {})
    cores = env.get("cores") or 0
    inforce: Mapping[str, Mapping[str, Any]] = results.get("in_force_everywhere", {})
    targets = results.get("targets", {})
    bootstrap = results.get("bootstrap", {})
    per_event_us, crc_us = _per_event_us(bootstrap)
    profile = (bootstrap.get("apply_profile") or {}).get("top")

    n, rate = headline
    t_inforce = targets.get("in_force_p99_ms", {})
    for flavor, t in t_inforce.get("by_flavor", {}).items():
        entry = _headline_entry(inforce, flavor, n, str(rate))
        if entry is None:
            continue
        cpu = entry.get("cpu", {})
        where = f"N={n}, R={rate}/s" + (
            "" if t_inforce.get("matches_target_config") else " (the quick run's headline)"
        )
        verdict = "meets" if t.get("met") else "misses"
        text = (
            f"{flavor}: in force everywhere p99 {entry['p99_ms']} ms at {where} {verdict} the "
            f"10 ms target. During the step the {n} services used "
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
    if crc_us is not None:
        native = env.get("crc32c")
        if native:
            out.append(
                f"kafka-python's record CRC check costs ~{crc_us:.0f} us per record (raw "
                f"consume with vs without check_crcs; the `crc32c` extension {native} is "
                "installed)."
            )
        else:
            out.append(
                f"kafka-python's record CRC check costs ~{crc_us:.0f} us per record (raw "
                "consume with vs without check_crcs): the `crc32c` extension is NOT installed, "
                "so kafka-python computes CRC32C in pure Python on every fetched batch "
                "(consumers) and every produced batch (receipts). Install `crc32c`."
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
            "80% target). Both include the CRC check; the difference is verify + decode + "
            "apply, i.e. the consumer is CPU-bound on its own work, not on the Kafka client."
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
                f"Live service profile ({entry['flavor']} {prof.get('service')} at N="
                f"{entry['n']}, R={entry['rate']}; py-spy, every thread): CPU samples by "
                f"function {_top_self(prof)}; threads busy: {busy}."
            )
        elif prof and prof.get("error"):
            out.append(f"py-spy could not profile the live service: {prof['error']}")
    saturated = [
        e for e in inforce.values() if e.get("drain") != "complete" or e.get("incomplete_events")
    ]
    if saturated:
        names = ", ".join(f"{e['flavor']} N={e['n']} R={e['rate']}" for e in saturated)
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
        f"(load average at start: {env.get('loadavg_at_start')}). Run time "
        f"{_fmt(results.get('timings_s', {}).get('total'), 1)} s."
    )
    add("")
    add("## Targets (reported, not asserted)")
    add("")
    add("| target | measured | met |")
    add("| --- | --- | --- |")
    targets = results.get("targets", {})
    t = targets.get("in_force_p99_ms", {})
    for flavor, v in t.get("by_flavor", {}).items():
        at = t.get("measured_at", {})
        note = "" if t.get("matches_target_config") else " (quick mode: not the target config)"
        add(
            f"| {t.get('target')} | {flavor}: p99 {_fmt(v.get('p99_ms'))} ms at N={at.get('n')}, "
            f"R={at.get('rate')}{note} | {'yes' if v.get('met') else '**no**'} |"
        )
    for key in ("check_ratio", "apply_vs_raw"):
        v = targets.get(key, {})
        measured = v.get("measured")
        shown = (
            f"{measured}x" if key == "check_ratio" and measured is not None
            else (f"{measured:.1%}" if measured is not None else "-")
        )
        add(f"| {v.get('target')} | {shown} | {'yes' if v.get('met') else '**no**'} |")
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
        "| flavor | N | target rate | achieved rate | events | p50 ms | p99 ms | max ms | "
        "incomplete | drain | services CPU | broker CPU | harness CPU |"
    )
    add("| --- " + "| ---: " * 8 + "| --- " + "| ---: " * 3 + "|")
    for entry in results.get("in_force_everywhere", {}).values():
        cpu = entry.get("cpu", {})
        add(
            f"| {entry['flavor']} | {entry['n']} | {entry['rate']} | "
            f"{_fmt(entry.get('achieved_rate'), 0)} | {_fmt(entry.get('events'))} | "
            f"{_fmt(entry.get('p50_ms'))} | {_fmt(entry.get('p99_ms'))} | "
            f"{_fmt(entry.get('max_ms'))} | {_fmt(entry.get('incomplete_events'))} | "
            f"{entry.get('drain')} | {_fmt(cpu.get('services_cores'))} | "
            f"{_fmt(cpu.get('broker_cores'))} | {_fmt(cpu.get('harness_cores'))} |"
        )
    add("")
    add("Per-service p50 / p99 (ms):")
    add("")
    for entry in results.get("in_force_everywhere", {}).values():
        per = ", ".join(
            f"{s} {_fmt(v.get('p50_ms'))}/{_fmt(v.get('p99_ms'))}"
            for s, v in entry.get("per_service", {}).items()
        )
        add(f"- {entry['flavor']} N={entry['n']} R={entry['rate']}: {per}")
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
    add("| model | kind | p50 | p99 | max | note |")
    add("| --- | --- | ---: | ---: | ---: | --- |")
    for m in results.get("exposure", {}).get("models", []):
        add(
            f"| {m['label']} | {m['kind']} | {_ms_from_s(m.get('p50_s'))} | "
            f"{_ms_from_s(m.get('p99_s'))} | {_ms_from_s(m.get('max_s'))} | "
            f"{m.get('note', '')} |"
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
    """``python -m bench.report DIR``: re-derive targets and findings, re-write results.md."""
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
    results["targets"] = evaluate_targets(
        results["in_force_everywhere"], results.get("check_ns", {}),
        results.get("apply_vs_raw", {}), headline,
    )
    results["findings"] = findings(results, headline)
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    (path.parent / "results.md").write_text(render_markdown(results))
    for problem in validate_results(results):
        print(f"results shape: {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
