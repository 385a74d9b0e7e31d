"""One benchmark run, start to finish: services, baselines, sweep, results, plots.

Order: Kafka's own floor and the per-check costs first (quiet machine), then the
kafka-python sweep, the bootstrap replays, the faust sweep (in quick mode only
when the time budget allows). The revocation-list poller runs in its own process
from the start (it sleeps almost all the time, so it does not disturb the rest).

A part that fails is recorded in ``errors`` and the run goes on; the exit code
is then 1. Every child process is stopped on the way out, whatever the way out
is (end, error, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from bench import checkcost, derive, e2e, exposure, plots, report
from bench.bootstrap import run_bootstrap
from bench.engines import available_engines
from bench.engines import engine as engine_info
from bench.from_idp import run_from_idp
from bench.peers import run_peer_sweep
from bench.plan import BenchPlan
from bench.processes import Child, Children, listening_pid
from bench.sweep import StepResult, SweepContext, config_key, new_run_id, run_engine_sweep
from bench.tables import Col, num, print_table
from devstack import ensure_kafka_jars, resolve_services
from schemas import KeySet, SigningKey

__all__ = ["ProgressUI", "run_benchmark"]



class _Task:
    def __init__(self, ui: ProgressUI, description: str, total: float | None) -> None:
        self.ui = ui
        self.reset(description, total)

    def reset(self, description: str, total: float | None) -> None:
        self.ui.progress.reset(
            self.ui.current, description=description, total=total, completed=0, visible=True
        )

    def update(self, completed: float) -> None:
        self.ui.progress.update(self.ui.current, completed=completed)

    def done(self) -> None:
        self.ui.progress.update(self.ui.current, visible=False)


class ProgressUI:
    """A rich progress display: one bar for the run, one for the current phase."""

    def __init__(self, console: Console, phases: int) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.overall = self.progress.add_task("revocast bench", total=phases)
        self.current = self.progress.add_task("", total=None, visible=False)

    def task(self, description: str, total: float | None) -> _Task:
        return _Task(self, description, total)

    def advance(self) -> None:
        self.progress.advance(self.overall)

    def log(self, message: str) -> None:
        self.progress.console.print(message)

    def __enter__(self) -> ProgressUI:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def _memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _git(*args: str) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            [git, *args], capture_output=True, text=True, timeout=5, check=False,
            cwd=Path(__file__).resolve().parent.parent,
        )
        if done.returncode == 0:
            return done.stdout.strip()
    return None


def _java_version() -> str | None:
    java = shutil.which("java")
    if java is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=10,
                              check=False)
        first = (done.stderr or done.stdout).strip().splitlines()
        return first[0] if first else None
    return None


def _environment(services: Any, plan: BenchPlan) -> dict[str, Any]:
    status = _git("status", "--porcelain")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "loadavg_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "java": _java_version(),
        "kafka_version": services.kafka_version,
        "services_source": services.source,
        "kafka_bootstrap": services.kafka_bootstrap,
        "redis_url": services.redis_url,
        "kafka_python": _version("kafka-python"),
        "faust": _version("faust-streaming"),
        "hdrhistogram": _version("hdrhistogram"),
        "crc32c": _version("crc32c"),
        "cryptography": _version("cryptography"),
        "pyjwt": _version("pyjwt"),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "mode": plan.name,
    }


def _exposure_models(
    plan: BenchPlan,
    poll: dict[str, Any] | None,
    check_ns: dict[str, Any],
    inforce: dict[str, dict[str, Any]],
    peers: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Every session model's exposure window and what each request pays for it.

    ``request_cost_ns`` is the revocation check a request pays on top of verifying
    its JWT: nothing for a bare JWT, the in-process check for every model that keeps a
    local view (revocast, the Redis peers, polling), a round trip for Redis per request.
    """
    models: list[dict[str, Any]] = []
    local_ns = check_ns.get("inprocess_p50") if isinstance(check_ns, dict) else None
    # The peers' cache is a dict of session ids: a check there is one lookup.
    inproc = check_ns.get("inprocess", {}) if isinstance(check_ns, dict) else {}
    lookup_ns = (inproc.get("is_session_revoked_miss") or {}).get("p50", local_ns)
    jwt: dict[str, Any] = {
        "kind": "computed",
        "method": "simulation: tokens issued uniformly over time, TTL drawn from the list, "
        "revoked at uniform random instants; window = remaining lifetime of tokens valid at "
        "that instant (no clock involved)",
        "tokens_per_distribution": plan.jwt_tokens,
        "distributions": {},
    }
    dists = [(f"{t:g} min", [t * 60]) for t in plan.jwt_ttls_min]
    dists.append(("mix " + "/".join(f"{t:g}" for t in plan.jwt_ttls_min) + " min",
                  [t * 60 for t in plan.jwt_ttls_min]))
    for label, ttls in dists:
        windows = exposure.simulate_jwt_exposure(ttls, plan.jwt_tokens, seed=plan.seed)
        summary = exposure.summarize_seconds(windows)
        jwt["distributions"][label] = {"ttls_s": ttls, **summary}
        models.append({"label": f"stateless JWT, TTL {label}", "kind": "computed", **summary,
                       "note": "valid until expiry", "request_cost_ns": 0.0})
    polling: dict[str, Any] = {"kind": "measured"}
    if poll is not None:
        polling.update({k: v for k, v in poll.items() if k != "periods"})
        polling["periods"] = {}
        for label, block in poll["periods"].items():
            seconds = [ns / 1e9 for ns in block["latencies_ns"]]
            summary = exposure.summarize_seconds(seconds)
            polling["periods"][label] = {"period_s": block["period_s"], "polls": block["polls"],
                                         **summary}
            models.append({"label": f"poll revocation list every {label} s", "kind": "measured",
                           **summary, "note": f"{summary['count']} revocations",
                           "request_cost_ns": local_ns})
    else:
        polling["error"] = "poller did not report"
    redis_block: dict[str, Any] = {"kind": "measured"}
    red = check_ns.get("redis") if isinstance(check_ns, dict) else None
    if red:
        wv = red["write_visible"]
        redis_block.update({
            "window_p50_s": wv["p50"] / 1e9,
            "window_p99_s": wv["p99"] / 1e9,
            "per_request_cost_p50_ns": red["exists_miss"]["p50"],
        })
        models.append({
            "label": "Redis lookup per request", "kind": "measured",
            "p50_s": wv["p50"] / 1e9, "p99_s": wv["p99"] / 1e9,
            "min_s": wv["min"] / 1e9, "max_s": wv["max"] / 1e9,
            "note": f"but every request pays ~{red['exists_miss']['p50'] / 1000:.0f} us",
            "request_cost_ns": red["exists_miss"]["p50"],
        })
    revocast: dict[str, Any] = {"kind": "measured", "configs": {}}
    configs = [plan.headline]
    paced = [s.rate for s in plan.steps if s.rate is not None]
    if paced and (max(plan.ns), min(paced)) != plan.headline:
        configs.append((max(plan.ns), min(paced)))  # the same services at a low rate
    sources = [("revocast", e, inforce) for e in plan.engines]
    sources += [("peer", p, peers or {}) for p in plan.peers]
    for kind, name, entries in sources:
        for n, rate in configs:
            entry = entries.get(config_key(name, n, str(rate)))
            if not entry or entry.get("p50_ms") is None:
                continue
            s = entry["in_force_everywhere"]
            if kind == "revocast":
                revocast["configs"][config_key(name, n, str(rate))] = {
                    k: s[k] for k in ("p50_ms", "p99_ms", "max_ms", "count")
                }
            label = f"revocast {name}" if kind == "revocast" else name
            missing = entry.get("incomplete_events") or 0
            models.append({
                # Percentiles are over the events every service applied: say how many not.
                "label": f"{label}, in all {n} services at {rate}/s"
                + (f" ({missing:,} events never everywhere)" if missing else ""),
                "kind": "measured",
                "p50_s": s["p50_ms"] / 1e3, "p99_s": s["p99_ms"] / 1e3,
                "min_s": s["min_ms"] / 1e3, "max_s": s["max_ms"] / 1e3,
                "note": "signed, replayable, receipted" if kind == "revocast"
                else "unsigned, no receipts" + (", no replay" if "pubsub" in name else ""),
                "request_cost_ns": local_ns if kind == "revocast" else lookup_ns,
            })
    return {"models": models, "jwt": jwt, "polling": polling, "redis_per_request": redis_block,
            "revocast": revocast}


def _delete_run_topics(bootstrap: str, run_id: str) -> int:
    """Best effort: delete every topic this run created (they matter on a shared cluster)."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    prefix = f"bench-{run_id}"
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="revocast-bench-cleanup",
                                 request_timeout_ms=30_000)
    except KafkaError:
        return 0
    try:
        names = [t for t in admin.list_topics() if t.startswith(prefix)]
        if names:
            admin.delete_topics(names, timeout_ms=30_000)
        return len(names)
    except KafkaError:
        return 0
    finally:
        with contextlib.suppress(KafkaError):
            admin.close()


def _print_summary(console: Console, results: dict[str, Any]) -> None:
    """The run's figures as tables (terminal width, or plain rows when piped)."""
    rows = []
    for e in [*results["in_force_everywhere"].values(),
              *results.get("peers", {}).get("entries", {}).values()]:
        bare = e.get("bare_client") or {}
        if bare and bare.get("cpu_us_per_event") is None and e.get("events"):
            bare = {**bare, "cpu_us_per_event": bare.get("cpu_s", 0.0) / e["events"] * 1e6}
        rows.append([
            e["engine"], num(e["n"]), e["rate"], num(e.get("achieved_rate"), 0),
            num(e.get("p50_ms")),
            num(e.get("p99_ms")) if derive.p99_floor_ms(e) is None
            else f"> {num(derive.p99_floor_ms(e), 0)}",
            num(e.get("max_ms")),
            num(e.get("incomplete_events")), num(e.get("service_cpu_us_per_event")),
            num(bare.get("cpu_us_per_event")),
        ])
    if rows:
        print_table(console, f"revocast bench ({results['mode']}): in force everywhere "
                    "(publish -> applied by all N)", [
                        Col("engine / peer"), Col("N", numeric=True), Col("rate", "/s"),
                        Col("achieved", "/s"), Col("p50", "ms"), Col("p99", "ms"),
                        Col("max", "ms"), Col("incomplete", "events"),
                        Col("CPU per event", "us"), Col("bare client", "us"),
                    ], rows,
                    caption="CPU per event: the services' CPU per event per service; bare "
                    "client: the engine's Kafka client alone, same step and records, per event; "
                    "p99 '> X': over 1% of the events were not applied everywhere when the "
                    "drain ended after X ms")
    check = results.get("check_ns", {})
    inproc = check.get("inprocess", {}) if isinstance(check, dict) else {}
    red = check.get("redis", {}) if isinstance(check, dict) else {}
    crow = [[label, num(b.get("p50")), num(b.get("p99"))] for label, b in (
        ("in-process RevocationState.check (valid token)", inproc.get("check_miss")),
        ("Redis EXISTS per request", red.get("exists_miss")),
        ("Redis full rule check (pipelined)", red.get("full_check_miss")),
    ) if b]
    if crow:
        print_table(console, "per-request revocation check", [
            Col("check"), Col("p50", "ns"), Col("p99", "ns")], crow,
            caption=f"Redis EXISTS / in-process: {num(check.get('ratio'))}x")
    e2e_block = results.get("raw_kafka_e2e_ms", {})
    if "p50" in e2e_block:
        print_table(console, "Kafka's own floor (EndToEndLatency, acks=all)", [
            Col("records", numeric=True), Col("p50", "ms"), Col("p99", "ms"),
            Col("p99.9", "ms")],
            [[num(e2e_block.get("records")), num(e2e_block.get("p50")),
              num(e2e_block.get("p99")), num(e2e_block.get("p999"))]])
    rrows = []
    raw = results.get("raw_consume_rate_per_s", {})
    for client, rate in raw.items():
        if client not in ("size", "definition", "error"):
            rrows.append([f"raw consume, bare {client}", num(raw.get("size")), num(rate, 0),
                          "-", "-"])
    for s in results.get("bootstrap", {}).get("sizes", []) if isinstance(
            results.get("bootstrap"), dict) else []:
        ap = s.get("apply", {})
        rrows.append([
            "apply (verify + decode + apply), kafka-python" + (
                "" if ap.get("complete") else " - NOT READY"),
            num(s.get("size")), num(ap.get("rate_per_s"), 0), num(ap.get("elapsed_s")),
            num((ap.get("peak_rss_kb") or 0) / 1024, 0),
        ])
        warm = s.get("apply_from_snapshot") or {}
        if warm.get("complete"):
            rrows.append([
                "ready from the snapshot the replay above saved" + (
                    "" if warm.get("from_snapshot") else " - NO SNAPSHOT USED"),
                num(s.get("size")), "-", num(warm.get("elapsed_s")),
                num((warm.get("peak_rss_kb") or 0) / 1024, 0),
            ])
        for eng, other in (s.get("apply_by_engine") or {}).items():
            if other.get("rate_per_s") is not None:
                rrows.append([f"apply (verify + decode + apply), {eng}", num(s.get("size")),
                              num(other.get("rate_per_s"), 0), num(other.get("elapsed_s")),
                              num((other.get("peak_rss_kb") or 0) / 1024, 0)])
    batch = (results.get("bootstrap") or {}).get("batch_records") if isinstance(
        results.get("bootstrap"), dict) else None
    if batch and batch.get("events_per_s") is not None:
        ap = batch.get("apply") or {}
        rrows.append([f"apply, batch records of {batch['events_per_record']} events, "
                      "kafka-python (rate in events/s)", num(batch["events"]),
                      num(batch["events_per_s"], 0), num(ap.get("elapsed_s")),
                      num((ap.get("peak_rss_kb") or 0) / 1024, 0)])
    if rrows:
        print_table(console, "replay of retained revocations", [
            Col("replay"), Col("records", numeric=True), Col("rate", "records/s"),
            Col("ready after", "s"), Col("peak RSS", "MiB")], rrows)
    mrows = [[m["label"], m["kind"], num(m.get("p50_s")), num(m.get("p99_s")),
              num(m["request_cost_ns"] / 1000) if m.get("request_cost_ns") is not None
              else "-"]
             for m in results.get("exposure", {}).get("models", [])]
    if mrows:
        print_table(console, "exposure window after a revocation, and what each request pays", [
            Col("session model"), Col("kind"), Col("p50", "s"), Col("p99", "s"),
            Col("check per request", "us")], mrows)
    idp = results.get("from_idp_ms") or {}
    irows = []
    for label in ("scim", "ssf_push"):
        block = idp.get(label)
        if not block:
            continue
        ans, eve = block["request_to_answer"], block["request_to_in_force_everywhere"]
        irows.append([block["request"], num(block["requests"]), num(ans.get("p50_ms")),
                      num(ans.get("p99_ms")), num(eve.get("p50_ms")), num(eve.get("p99_ms")),
                      num(block["incomplete_events"])])
    if irows:
        print_table(console, f"from the identity provider: request -> in force in all "
                    f"{idp.get('services')} services ({idp.get('engine')})", [
                        Col("IdP request"), Col("requests", numeric=True),
                        Col("answer p50", "ms"), Col("answer p99", "ms"),
                        Col("in force p50", "ms"), Col("in force p99", "ms"),
                        Col("incomplete", "events")], irows)
    trows = []
    for t in results.get("targets", {}).values():
        by = t.get("by_engine")
        if by is None:
            trows.append([t["target"], "-", num(t.get("measured")),
                          "met" if t.get("met") else "MISSED"])
            continue
        for name, v in by.items():
            shown = v.get("p99_ms", v.get("service_us", v.get("ratio")))
            trows.append([t["target"], name, num(shown), "met" if v.get("met") else "MISSED"])
    if trows:
        print_table(console, "targets (reported, not asserted)", [
            Col("target"), Col("engine"), Col("measured", numeric=True), Col("verdict")],
            trows, caption="measured is in the target's own unit")


def run_benchmark(
    plan: BenchPlan, out_dir: Path, *, console: Console | None = None,
    skip: frozenset[str] = frozenset(),
) -> int:
    """Run ``plan`` and write results into ``out_dir``; returns the exit code."""
    console = console or Console()
    begin = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "logs").mkdir(exist_ok=True)
    run_id = new_run_id()
    secrets_dir = Path(tempfile.mkdtemp(prefix="revocast-bench-"))
    signer = SigningKey.generate(f"bench-{run_id}")
    key_file = secrets_dir / "signing.jwk.json"
    key_file.write_text(json.dumps(signer.private_jwk()))
    key_file.chmod(0o600)
    jwks_path = secrets_dir / "jwks.json"
    jwks_path.write_text(json.dumps(KeySet.of([signer]).to_jwks()))

    errors: list[str] = []
    skipped: list[str] = []
    timings: dict[str, float] = {}
    entries: dict[str, dict[str, Any]] = {}
    peer_entries: dict[str, dict[str, Any]] = {}
    headline_raw: dict[str, dict[str, Any]] = {}
    check_ns: dict[str, Any] = {}
    e2e_block: dict[str, Any] = {}
    boot: dict[str, Any] = {}
    idp: dict[str, Any] = {}
    poll: dict[str, Any] | None = None
    environment: dict[str, Any] = {}
    cleanup: dict[str, Any] = {}

    steps_per_sweep = sum(len(steps) for _n, steps in plan.groups())
    phases = (len(plan.engines) + len(plan.peers)) * steps_per_sweep + 5
    try:
        with (
            _sigterm_as_interrupt(),
            Children() as children,
            ProgressUI(console, phases) as ui,
        ):
            ui.log(f"[bold]revocast bench[/] ({plan.name}) -> {out_dir}")
            task = ui.task("starting Kafka and Redis (devstack)", total=None)
            t0 = time.monotonic()
            with resolve_services() as services:
                timings["services_start"] = round(time.monotonic() - t0, 2)
                task.done()
                environment = _environment(services, plan)
                ui.log(
                    f"Kafka {services.kafka_version} at {services.kafka_bootstrap} "
                    f"({services.source}), Redis at {services.redis_url}; started in "
                    f"{timings['services_start']} s"
                )
                broker_pid = (services.kafka_broker.pid if services.kafka_broker
                              else listening_pid(services.kafka_bootstrap.split(",")[0]))

                def phase(name: str, fn: Callable[[], None]) -> None:
                    if name in skip:
                        skipped.append(f"{name} (--skip)")
                        return
                    t = time.monotonic()
                    try:
                        fn()
                    except KeyboardInterrupt:
                        raise
                    except Exception as exc:
                        errors.append(f"{name}: {type(exc).__name__}: {exc}")
                        ui.log(f"[red]{name} failed:[/] {type(exc).__name__}: {exc}")
                        (out_dir / "logs" / f"error-{name}.txt").write_text(
                            traceback.format_exc()
                        )
                    finally:
                        timings[name] = round(time.monotonic() - t, 2)

                poll_out = out_dir / "logs" / "poller.json"
                poller: Child | None = None
                if "poll" not in skip:
                    poller = children.start(Child(
                        "poller",
                        [sys.executable, "-m", "bench.poller",
                         "--redis-url", services.redis_url,
                         "--periods", ",".join(f"{p:g}" for p in plan.poll_periods),
                         "--window", str(plan.poll_window),
                         "--revocations", str(plan.poll_revocations),
                         "--seed", str(plan.seed),
                         "--out", str(poll_out)],
                        env=dict(os.environ), log_path=out_dir / "logs" / "poller.log",
                    ))
                else:
                    skipped.append("poll (--skip)")

                def do_e2e() -> None:
                    task = ui.task("Kafka EndToEndLatency (Java tool)", total=None)
                    jars = ensure_kafka_jars()
                    e2e_block.update(e2e.run_end_to_end_latency(
                        jars, services.kafka_bootstrap, f"bench-{run_id}.e2e",
                        records=plan.e2e_records, record_size=plan.e2e_record_size,
                        log_path=out_dir / "logs" / "e2e.log",
                    ))
                    task.done()
                    ui.log(f"Kafka e2e: p50 {e2e_block['p50']} ms, p99 {e2e_block['p99']} ms")

                def do_check() -> None:
                    task = ui.task("per-check cost: in-process vs Redis", total=None)
                    inproc = checkcost.measure_inprocess(
                        plan.check_state_size, plan.check_iterations
                    )
                    red = checkcost.measure_redis(
                        services.redis_url, plan.check_state_size, plan.redis_iterations
                    )
                    check_ns.update(checkcost.combine(inproc, red))
                    task.done()
                    ui.log(
                        f"check: in-process {check_ns['inprocess_p50']} ns, Redis "
                        f"{check_ns['redis_p50']} ns ({check_ns['ratio']}x)"
                    )

                ctx = SweepContext(
                    bootstrap=services.kafka_bootstrap, plan=plan, run_id=run_id, signer=signer,
                    jwks_path=jwks_path, out_dir=out_dir, children=children,
                    broker_pid=broker_pid, ui=ui, redis_url=services.redis_url,
                )

                def on_result(result: StepResult) -> None:
                    e = result.entry
                    target = peer_entries if e.get("kind") == "peer" else entries
                    target[config_key(e["engine"], e["n"], e["rate"])] = e
                    if result.inforce.everywhere_ns:
                        headline_raw[e["engine"]] = {
                            "everywhere": result.inforce.everywhere_ns,
                            "per_service": result.inforce.per_service_ns,
                        }
                    ui.advance()
                    ui.log(
                        f"{e['engine']:>12} N={e['n']} R={e['rate']:>4}: achieved "
                        f"{e['achieved_rate']:,.0f}/s, {e['events']:,} events, in force "
                        f"everywhere p50 {e['p50_ms']} ms p99 {e['p99_ms']} ms max "
                        f"{e['max_ms']} ms, incomplete {e['incomplete_events']}, CPU "
                        f"{e['cpu']['total_cores']} cores, "
                        f"{e.get('service_cpu_us_per_event')} us per event per service"
                        + (f" (bare {e['bare_client']['client']}: "
                           f"{e['bare_client']['cpu_us_per_record']} us per record)"
                           if e.get("bare_client") else "")
                    )

                def sweep(engine: str) -> Callable[[], None]:
                    return lambda: run_engine_sweep(ctx, engine, on_result)

                def peer_sweep(peer: str) -> Callable[[], None]:
                    return lambda: run_peer_sweep(ctx, peer, on_result)

                def do_idp() -> None:
                    idp.update(run_from_idp(ctx, n=plan.idp_services, count=plan.idp_requests,
                                            rate=plan.idp_rate))
                    for label in ("scim", "ssf_push"):
                        s = idp[label]["request_to_in_force_everywhere"]
                        ui.log(f"from the IdP ({label}): request -> in force in all "
                               f"{plan.idp_services} services p50 {s['p50_ms']} ms, p99 "
                               f"{s['p99_ms']} ms ({idp[label]['requests']} requests)")

                def do_bootstrap() -> None:
                    boot.update(run_bootstrap(
                        bootstrap=services.kafka_bootstrap, run_id=run_id,
                        sizes=plan.bootstrap_sizes, profile_records=plan.profile_records,
                        partitions=plan.partitions, key_file=key_file, jwks_path=jwks_path,
                        out_dir=out_dir, children=children, timeout=plan.bootstrap_timeout,
                        ui=ui, bare_clients=tuple(dict.fromkeys(
                            engine_info(e).bare_client for e in plan.engines)),
                        batch_events=plan.batch_events,
                        apply_engines=tuple(e for e in plan.engines
                                            if e not in ("kafka-python", "faust")),
                        redis_url=services.redis_url,
                    ))
                    for s in boot["sizes"]:
                        raw = s.get("raw", {}).get("rate_per_s")
                        ui.log(
                            f"bootstrap {s['size']:,}: apply {s['apply']['elapsed_s']} s "
                            f"({s['apply']['rate_per_s']:,.0f}/s, peak RSS "
                            f"{s['apply']['peak_rss_kb'] / 1024:.0f} MiB)"
                            + (f", raw consume {raw:,.0f}/s" if raw else "")
                        )

                phase("e2e", do_e2e)
                ui.advance()
                phase("check", do_check)
                ui.advance()
                engines = list(plan.engines)
                if "kafka-python" in engines:
                    phase("sweep-kafka-python", sweep("kafka-python"))
                for peer in plan.peers:
                    phase(f"peers-{peer}", peer_sweep(peer))
                phase("idp", do_idp)
                phase("bootstrap", do_bootstrap)
                ui.advance()
                for engine in engines:
                    if engine != "kafka-python":
                        phase(f"sweep-{engine}", sweep(engine))

                task = ui.task("deleting this run's topics", total=None)
                cleanup["topics_deleted"] = _delete_run_topics(services.kafka_bootstrap, run_id)
                task.done()

                if poller is not None:
                    task = ui.task("waiting for the revocation-list poller", total=None)
                    limit = plan.poll_window + max(plan.poll_periods) + 15
                    assert poller.proc is not None
                    remaining = limit - (time.monotonic() - (poller.started_at or 0))
                    try:
                        poller.proc.wait(max(1.0, remaining))
                    except subprocess.TimeoutExpired:
                        errors.append("poll: poller did not finish in time")
                    poller.stop(5)
                    with contextlib.suppress(OSError, ValueError):
                        poll = json.loads(poll_out.read_text())
                    task.done()
                ui.advance()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: every child process was stopped[/]")
        shutil.rmtree(secrets_dir, ignore_errors=True)
        return 130
    finally:
        shutil.rmtree(secrets_dir, ignore_errors=True)

    timings["total_before_report"] = round(time.monotonic() - begin, 2)
    apply_vs_raw: dict[str, Any] = {}
    compared = [s for s in boot.get("sizes", []) if "raw" in s and "apply" in s]
    if compared:
        both = compared[-1]
        apply_vs_raw = {
            "size": both["size"],
            "apply_rate": both["apply"].get("rate_per_s"),
            "raw_rate": both["raw"].get("rate_per_s"),
            "ratio": both.get("apply_vs_raw"),
            "definition": "RevocationConsumer replay (verify+decode+apply) records/s over "
            "bare kafka-python KafkaConsumer records/s, same topic, same run, fresh processes",
        }
    cpu_block = derive.service_cpu_per_event(entries)
    ready_block = derive.bootstrap_ready(boot)
    peers_vs = derive.peer_comparison(entries, peer_entries)
    results: dict[str, Any] = {
        "schema": report.SCHEMA,
        "mode": plan.name,
        "environment": environment,
        "settings": plan.to_dict(),
        "engines": {e.name: ({"available": True} if e.available else
                             {"available": False, "reason": e.reason})
                    for e in available_engines()},
        "in_force_everywhere": entries,
        "check_ns": check_ns or {"error": "not measured"},
        "raw_kafka_e2e_ms": e2e_block or {"error": "not measured"},
        "service_cpu_us_per_event": cpu_block,
        "apply_rate_per_s": derive.apply_rates(boot),
        "raw_consume_rate_per_s": derive.raw_consume_rates(boot),
        "apply_vs_raw": apply_vs_raw,
        "bootstrap_ready_s": ready_block,
        "bootstrap": boot or {"error": "not measured"},
        "from_idp_ms": idp or {"error": "not measured"},
        "peers": {"entries": peer_entries, "revocast_p99_over_peer_p99": peers_vs,
                  "definition": "Redis pub/sub fan-out and Redis Streams (XREAD per "
                  "service) to N in-process caches, same N, rates and pacing as revocast "
                  "(bench.peers)"},
        "exposure": _exposure_models(plan, poll, check_ns, entries, peer_entries),
        "skipped": skipped,
        "errors": errors,
        "cleanup": cleanup,
    }
    results["targets"] = report.evaluate_targets(
        entries, check_ns, apply_vs_raw, plan.headline, e2e=e2e_block, cpu=cpu_block,
        peers_vs=peers_vs, ready=ready_block, apply_rates=results["apply_rate_per_s"],
    )
    results["findings"] = report.findings(results, plan.headline)
    try:
        results["plots"] = plots.plot_all(
            out_dir, entries=[*entries.values(), *peer_entries.values()],
            headline_raw=headline_raw, headline=plan.headline,
            exposure_models=results["exposure"]["models"],
            target_ms=results["targets"]["in_force_p99_ms"]["limit"],
        )
    except Exception as exc:
        errors.append(f"plots: {type(exc).__name__}: {exc}")
        results["plots"] = []
    results["profiles"] = sorted(p.name for p in out_dir.glob("profile-*"))
    timings["total"] = round(time.monotonic() - begin, 2)
    results["timings_s"] = timings
    results["environment"]["loadavg_at_end"] = round(os.getloadavg()[0], 2)
    problems = report.validate_results(results)
    if problems:
        errors.extend(f"results shape: {p}" for p in problems)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out_dir / "results.md").write_text(report.render_markdown(results))

    _print_summary(console, results)
    for item in results["findings"]:
        console.print(f"- {item}")
    for item in skipped:
        console.print(f"[yellow]skipped:[/] {item}")
    for item in errors:
        console.print(f"[red]error:[/] {item}")
    console.print(f"results: {out_dir / 'results.json'}, {out_dir / 'results.md'}; "
                  f"total {timings['total']:.0f} s")
    return 1 if errors else 0
