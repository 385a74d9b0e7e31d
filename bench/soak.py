"""Soak: N services under a steady publish rate for minutes - memory, latency and loss over time.

    python -m bench --soak --out soak-out                     # 10 min at 300/s, 4 services
    python -m bench --soak --soak-minutes 2 --out /tmp/soak   # a short check
    make soak

The services, their topics and their readiness are the sweep's own
(:func:`bench.sweep.start_group`: the consumers package's entry point per engine, probed
until every service applied a probe); the load is :func:`bench.load.publish_paced` with one
step as long as the soak; what the services report (receipts or watermarks) is read with
:class:`bench.receipts.ReceiptReader` *while* the soak runs. Every ``window_s`` seconds the
harness samples each service's RSS and CPU (``/proc``), its events-applied counter (its own
``/metrics``), the broker's CPU and the machine's load average. Each acknowledged event's
publish -> in-force-everywhere latency (the slowest service's report) goes into the
HdrHistogram of the window it was *published* in, so a window's p50/p99/max describe the
events of that window, whenever their reports arrived.

At the end, after the publisher stopped and the services drained:

* **lost**: acknowledged events that some service never reported applied. Nothing is
  dropped from that count because its report came late; a publish that failed is counted
  apart (``failed_publishes``: the caller was told, nothing acknowledged is missing).
* **the services' own state**, through their read-only admin endpoint
  (:mod:`consumers.admin`, served on the metrics port): ``/revocast/freshness`` must show
  every partition applied through the last acknowledged offset (every event, by position),
  and ``/revocast/inspect`` must answer ``revoked`` for a sample of the events whose
  credential has not expired yet (every such event when there are few).
* **RSS after warm-up** (the first 2 minutes, or the first fifth of a shorter soak, are
  excluded): least-squares slope in MiB per minute and max - min, per service.
* **p99 stability**: the p99 of each window, and the p99 of the last third's events over
  the first third's.

Revocations carry a short lifetime (``lifetime_s``, 60 s): the revocation state keeps a
fact only as long as the credential it revokes (DESIGN.md, principle 3), so with short
lifetimes the state reaches its steady size during the warm-up and the RSS slope measures
what grows without such a bound, not the state the design keeps on purpose.

Not guaranteed: the figures are those of a shared machine (the load average of every
window is recorded beside them); a window's latencies include queueing left by earlier
windows; the admin check samples decisions (positions are checked for every event).
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from bench.engines import available_engines
from bench.load import EventFactory, Sender, SendResult, publish_paced, revocast_sender
from bench.plan import BenchPlan, RateStep
from bench.plots import _save
from bench.processes import Children, cpu_seconds, listening_pid, rss_kb, self_cpu_seconds
from bench.receipts import Applied
from bench.runner import ProgressUI, _delete_run_topics, _environment, _sigterm_as_interrupt
from bench.services import ServiceGroup
from bench.stats import LatencyRecorder
from bench.sweep import SweepContext, new_run_id, start_group
from bench.tables import Col, num, print_table
from devstack import KafkaBroker, Services
from devstack.broker import probe_external_kafka
from producer import RevocationPublisher
from schemas import KeySet, SessionRevoked, SigningKey

__all__ = ["PREFERRED_ENGINES", "SoakPlan", "default_engine", "headline", "render_markdown",
           "run_soak", "soak_main"]

PREFERRED_ENGINES: tuple[str, ...] = ("confluent", "kafka-python", "faust")
"""Best first: librdkafka fetches on its own native threads, outside the GIL that the
service's verify-and-apply loop needs; kafka-python is the reference engine."""

RSS_FLAT_MIB_PER_MIN = 1.0
"""The soak's "RSS flat" criterion: every service grows slower than this after warm-up."""
P99_STABLE_RATIO = 2.0
"""The soak's "p99 stable" criterion: the last third's p99 within this factor of the first's."""

_MIB = 1024.0


@dataclass(frozen=True)
class SoakPlan:
    engine: str
    services: int = 4
    rate: int = 300
    minutes: float = 10.0
    window_s: float = 10.0
    warmup_s: float | None = None
    """Excluded from the RSS figures; default: 2 minutes, or a fifth of a shorter soak."""
    lifetime_s: float = 60.0
    """Lifetime of the revoked sessions (see the module docstring)."""
    partitions: int = 6
    inspect_sample: int = 500
    """Events asked about through ``/revocast/inspect``, per service."""
    ready_timeout: float = 120.0
    drain_timeout: float = 120.0
    stall_timeout: float = 30.0
    max_batch: int = 200
    seed: int = 20261129

    @property
    def duration_s(self) -> float:
        return self.minutes * 60.0

    @property
    def warmup(self) -> float:
        return self.warmup_s if self.warmup_s is not None else min(120.0, self.duration_s / 5)

    @property
    def windows(self) -> int:
        return max(1, math.ceil(self.duration_s / self.window_s))

    def step(self) -> RateStep:
        return RateStep(self.rate, self.duration_s, math.ceil(self.rate * self.duration_s))

    def bench_plan(self) -> BenchPlan:
        """The sweep's plan for this soak: one group of N, one step as long as the soak."""
        return BenchPlan(
            name="soak", engines=(self.engine,), ns=(self.services,), steps=(self.step(),),
            headline=(self.services, self.rate), peers=(), partitions=self.partitions,
            ready_timeout=self.ready_timeout, drain_timeout=self.drain_timeout,
            stall_timeout=self.stall_timeout, warmup=None, max_batch=self.max_batch,
            seed=self.seed, profile_service=False,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["warmup_s"] = self.warmup
        data["duration_s"] = self.duration_s
        return data


def default_engine() -> str | None:
    """The first engine of :data:`PREFERRED_ENGINES` that can run here."""
    usable = {e.name for e in available_engines() if e.available}
    return next((name for name in PREFERRED_ENGINES if name in usable), None)


# --------------------------------------------------------------------------- what was published


class Acked(NamedTuple):
    event_id: uuid.UUID
    published_ns: int
    partition: int
    offset: int
    session_id: str | None
    """None when its batch was only partly acknowledged (the ids cannot be paired then)."""
    subject: str | None
    expires_s: float


class Ledger:
    """Every acknowledged event, appended by the publisher thread, read by the sampler."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[Acked] = []
        self.failed = 0

    def sender(self, publisher: RevocationPublisher) -> Sender:
        """:func:`bench.load.revocast_sender` that also records what it sent."""
        send = revocast_sender(publisher)

        def record(events: list[SessionRevoked]) -> SendResult:
            result = send(events)
            paired = len(result.published) == len(events)  # publish_many keeps input order
            expires = events[0].expires_at.timestamp()  # one lifetime per batch (EventFactory)
            rows = []
            for i, (event_id, published_ns, partition, offset) in enumerate(result.published):
                event = events[i] if paired else None
                rows.append(Acked(
                    event_id, published_ns, partition, offset,
                    event.session_id if event is not None else None,
                    event.subject.id if event is not None else None,
                    expires,
                ))
            with self.lock:
                self.events.extend(rows)
                self.failed += result.failed
            return result

        return record

    def since(self, cursor: int) -> list[Acked]:
        with self.lock:
            return self.events[cursor:]


class ShortLivedEvents(EventFactory):
    """:class:`bench.load.EventFactory` whose revoked sessions expire after ``lifetime_s``."""

    def __init__(self, tag: str, *, seed: int, lifetime_s: float) -> None:
        super().__init__(tag, seed=seed)
        self.lifetime_s = lifetime_s

    def make(self, count: int, *, lifetime_s: float | None = None) -> list[SessionRevoked]:
        return super().make(count, lifetime_s=lifetime_s or self.lifetime_s)


# --------------------------------------------------------------------------- the services' admin


@contextlib.contextmanager
def _admin_port_any() -> Iterator[None]:
    """Services started inside serve ``/metrics`` and ``/revocast/*`` on a free port each.

    ``start_group`` builds each service's environment from the harness's (it scrubs only
    what would change the measurement), so the setting is passed that way; the port each
    service got is read back from ``/proc`` (:func:`listening_ports`).
    """
    saved = os.environ.get("REVOCAST_METRICS_PORT")
    os.environ["REVOCAST_METRICS_PORT"] = "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("REVOCAST_METRICS_PORT", None)
        else:
            os.environ["REVOCAST_METRICS_PORT"] = saved


def listening_ports(pid: int) -> list[int]:
    """TCP ports ``pid`` listens on (its socket descriptors joined with ``/proc/net/tcp*``)."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports: list[int] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                    ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(set(ports))


def _get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _get_json(port: int, path: str) -> Any:
    status, body = _get(port, path)
    if status != 200:
        raise RuntimeError(f"GET {path} on port {port}: HTTP {status}: {body[:200]!r}")
    return json.loads(body)


def admin_ports(group: ServiceGroup, timeout: float = 30.0) -> dict[str, int]:
    """service -> the port on which it answers ``/revocast/freshness`` as itself."""
    found: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while True:
        for service, pid in group.pids().items():
            if service in found:
                continue
            for port in listening_ports(pid):
                with contextlib.suppress(OSError, ValueError, RuntimeError):
                    if _get_json(port, "/revocast/freshness").get("service") == service:
                        found[service] = port
                        break
        if len(found) == len(group.members):
            return found
        if time.monotonic() > deadline:
            missing = sorted(set(group.members) - set(found))
            raise RuntimeError(f"no admin endpoint found for {', '.join(missing)} within "
                               f"{timeout:g} s (REVOCAST_METRICS_PORT=0 was set)")
        time.sleep(0.5)


def applied_counter(port: int) -> float | None:
    """The service's ``revocast_consumer_events_applied`` total (every type), or None."""
    try:
        status, body = _get(port, "/metrics")
    except OSError:
        return None
    if status != 200:
        return None
    total = 0.0
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "revocast_consumer_events_applied":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


# --------------------------------------------------------------------------- sampling


@dataclass
class Sample:
    t_s: float
    rss_mib: dict[str, float | None]
    cpu_s: dict[str, float | None]
    applied: dict[str, float | None]
    broker_cpu_s: float | None
    harness_cpu_s: float
    loadavg_1m: float


def take_sample(t_s: float, group: ServiceGroup, ports: Mapping[str, int],
                broker_pid: int | None) -> Sample:
    pids = group.pids()
    rss = {s: (kb / _MIB if (kb := rss_kb(pid)) is not None else None) for s, pid in pids.items()}
    return Sample(
        t_s=t_s,
        rss_mib=rss,
        cpu_s={s: cpu_seconds(pid) for s, pid in pids.items()},
        applied={s: applied_counter(port) for s, port in ports.items()},
        broker_cpu_s=cpu_seconds(broker_pid) if broker_pid else None,
        harness_cpu_s=self_cpu_seconds(),
        loadavg_1m=os.getloadavg()[0],
    )


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


@dataclass
class Windows:
    """Latency per publish window, per third of the soak, and overall."""

    plan: SoakPlan
    t0_ns: int
    recorders: list[LatencyRecorder] = field(default_factory=list)
    published: list[int] = field(default_factory=list)
    thirds: list[LatencyRecorder] = field(default_factory=list)
    overall: LatencyRecorder = field(default_factory=LatencyRecorder)

    def __post_init__(self) -> None:
        n = self.plan.windows
        self.recorders = [LatencyRecorder() for _ in range(n)]
        self.published = [0] * n
        self.thirds = [LatencyRecorder() for _ in range(3)]

    def index(self, published_ns: int) -> int:
        k = int((published_ns - self.t0_ns) // int(self.plan.window_s * 1e9))
        return min(max(k, 0), self.plan.windows - 1)

    def third(self, k: int) -> int:
        return min(2, k * 3 // self.plan.windows)

    def record(self, event: Acked, latency_ns: int) -> None:
        k = self.index(event.published_ns)
        self.recorders[k].record_ns(latency_ns)
        self.thirds[self.third(k)].record_ns(latency_ns)
        self.overall.record_ns(latency_ns)


def resolve(pending: list[Acked], applied: Applied, services: Sequence[str],
            windows: Windows) -> list[Acked]:
    """Record every pending event now applied by every service; return those still pending.
    The per-event receipts of a resolved event are dropped (the harness's memory stays flat;
    the watermarks that also cover it are kept)."""
    still: list[Acked] = []
    for event in pending:
        position = (event.partition, event.offset)
        worst = 0
        for service in services:
            at = applied.applied_ns(service, event.event_id, position)
            if at is None:
                still.append(event)
                break
            worst = max(worst, at)
        else:
            windows.record(event, worst - event.published_ns)
            applied.receipts.pop(event.event_id, None)
    return still


# --------------------------------------------------------------------------- final checks


def check_admin(ports: Mapping[str, int], events: Sequence[Acked], *, sample: int,
                seed: int) -> dict[str, Any]:
    """Ask every service itself: applied through every acknowledged offset, and ``revoked``
    for a sample of the events whose credential is still valid (15 s margin)."""
    last: dict[int, int] = {}
    for e in events:
        last[e.partition] = max(last.get(e.partition, -1), e.offset)
    horizon = time.time() + 15.0
    live = [e for e in events if e.session_id is not None and e.expires_s > horizon]
    asked = random.Random(seed).sample(live, min(sample, len(live)))
    out: dict[str, Any] = {}
    for service, port in ports.items():
        view = _get_json(port, "/revocast/freshness")
        through = {int(p): int(o) for p, o in view.get("applied_through", {}).items()}
        behind = {str(p): {"last_acknowledged": o, "applied_through": through.get(p)}
                  for p, o in sorted(last.items()) if through.get(p, -1) < o}
        wrong: list[dict[str, Any]] = []
        for e in asked:
            query = urlencode({"sub": e.subject or "", "sid": e.session_id or ""})
            answer = _get_json(port, f"/revocast/inspect?{query}")
            decision = answer.get("decision", {})
            if (decision.get("verdict"), decision.get("rule")) != ("revoked", "session_revoked"):
                wrong.append({"event_id": str(e.event_id), "sid": e.session_id,
                              "decision": decision})
        out[service] = {
            "applied_through_every_acknowledged_offset": not behind,
            "partitions_behind": behind,
            "inspected": len(asked),
            "revoked": len(asked) - len(wrong),
            "not_revoked": len(wrong),
            "not_revoked_examples": wrong[:5],
        }
    return {
        "method": "GET /revocast/freshness (applied-through offset per partition against the "
        "last acknowledged offset) and GET /revocast/inspect?sub=..&sid=.. (must answer "
        "revoked/session_revoked) for a random sample of the events not yet expired",
        "unexpired_events": len(live),
        "services": out,
        "ok": all(s["applied_through_every_acknowledged_offset"] and not s["not_revoked"]
                  for s in out.values()),
    }


# --------------------------------------------------------------------------- figures


def _slope(points: Sequence[tuple[float, float]]) -> float | None:
    if len(points) < 2:
        return None
    xs = np.array([p[0] for p in points]) / 60.0
    ys = np.array([p[1] for p in points])
    if float(np.ptp(xs)) == 0.0:
        return None
    return float(np.polyfit(xs, ys, 1)[0])


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def summarize(plan: SoakPlan, samples: Sequence[Sample], windows: Windows,
              services: Sequence[str]) -> dict[str, Any]:
    """Per-window rows and the soak's figures (RSS growth, p99 stability, rates)."""
    rows: list[dict[str, Any]] = []
    for k, (before, after) in enumerate(itertools.pairwise(samples)):
        wall = max(1e-6, after.t_s - before.t_s)
        summary = windows.recorders[k].summary() if k < plan.windows else {}
        cpu = {s: _r(d / wall if (d := _delta(after.cpu_s[s], before.cpu_s[s])) is not None
                     else None) for s in services}
        applied = {s: _delta(after.applied.get(s), before.applied.get(s)) for s in services}
        broker = _delta(after.broker_cpu_s, before.broker_cpu_s)
        rows.append({
            "window": k,
            "t_start_s": round(before.t_s, 2),
            "t_end_s": round(after.t_s, 2),
            "published": windows.published[k] if k < plan.windows else 0,
            "in_force_everywhere": summary.get("count", 0),
            "p50_ms": summary.get("p50_ms"),
            "p99_ms": summary.get("p99_ms"),
            "max_ms": summary.get("max_ms"),
            "rss_mib": {s: _r(v, 1) for s, v in after.rss_mib.items()},
            "cpu_cores": cpu,
            "applied": {s: (int(v) if v is not None else None) for s, v in applied.items()},
            "applied_per_s": {s: _r(v / wall, 1) if v is not None else None
                              for s, v in applied.items()},
            "broker_cores": _r(broker / wall) if broker is not None else None,
            "harness_cores": _r((after.harness_cpu_s - before.harness_cpu_s) / wall),
            "loadavg_1m": round(after.loadavg_1m, 2),
        })
    rss: dict[str, Any] = {}
    for s in services:
        kept = [(x.t_s, v) for x in samples if x.t_s >= plan.warmup
                and (v := x.rss_mib.get(s)) is not None]
        values = [v for _t, v in kept]
        every = [v for x in samples if (v := x.rss_mib.get(s)) is not None]
        rss[s] = {
            "start_mib": _r(every[0], 1) if every else None,
            "after_warmup_mib": _r(values[0], 1) if values else None,
            "end_mib": _r(values[-1], 1) if values else None,
            "peak_mib": _r(max(every), 1) if every else None,
            "slope_mib_per_min": _r(_slope(kept)),
            "max_minus_min_mib": _r(max(values) - min(values), 1) if values else None,
            "samples_after_warmup": len(values),
        }
    slopes = [v["slope_mib_per_min"] for v in rss.values() if v["slope_mib_per_min"] is not None]
    p50s = [r["p50_ms"] for r in rows if r["p50_ms"] is not None]
    p99s = [r["p99_ms"] for r in rows if r["p99_ms"] is not None]
    first, last = (windows.thirds[0].summary(), windows.thirds[2].summary())
    ratio = (first["p99_ms"] and last["p99_ms"] and last["p99_ms"] / first["p99_ms"]) or None
    first_sample, last_sample = samples[0], samples[-1]
    wall = max(1e-6, last_sample.t_s - first_sample.t_s)
    applied_total = {s: _delta(last_sample.applied.get(s), first_sample.applied.get(s))
                     for s in services}
    loads = [x.loadavg_1m for x in samples]
    return {
        "windows": rows,
        "rss": {"per_service": rss,
                "series": {"t_s": [round(x.t_s, 2) for x in samples],
                           **{s: [_r(x.rss_mib.get(s), 1) for x in samples] for s in services}},
                "max_slope_mib_per_min": max(slopes) if slopes else None,
                "warmup_excluded_s": plan.warmup,
                "method": "VmRSS from /proc/<pid>/status at every window's end; slope: "
                "least squares over the samples after warm-up"},
        "latency": {
            "overall": windows.overall.summary(),
            "window_p50_ms": {"min": min(p50s, default=None), "max": max(p50s, default=None)},
            "window_p99_ms": {"min": min(p99s, default=None),
                              "median": statistics.median(p99s) if p99s else None,
                              "max": max(p99s, default=None)},
            "first_third": first,
            "last_third": last,
            "p99_last_third_over_first": _r(ratio),
            "hdr_in_force_us": windows.overall.encoded(),
            "definition": "publish (the envelope's published_at_ns) -> the slowest service's "
            "report (receipt, or first watermark past the event's offset); windows by "
            "publish time",
        },
        "rates": {
            "target_per_s": plan.rate,
            "applied_per_s": {s: _r(v / wall, 1) if v is not None else None
                              for s, v in applied_total.items()},
            "applied_total": {s: int(v) if v is not None else None
                              for s, v in applied_total.items()},
        },
        "loadavg_1m": {"min": min(loads), "mean": round(statistics.fmean(loads), 2),
                       "max": max(loads), "start": loads[0], "end": loads[-1]},
    }


# --------------------------------------------------------------------------- output


def plot_soak(soak: Mapping[str, Any], path: Path) -> Path:
    """RSS per service (top) and each window's p50/p99 (bottom) against time."""
    rows = soak["windows"]
    plan = soak["plan"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    series = soak["rss"]["series"]
    minutes = [t / 60 for t in series["t_s"]]
    known: list[float] = []
    for service in sorted(soak["rss"]["per_service"]):
        values = [v if v is not None else np.nan for v in series[service]]
        known += [v for v in series[service] if v is not None]
        slope = soak["rss"]["per_service"][service]["slope_mib_per_min"]
        top.plot(minutes, values, lw=1.4, label=f"{service} (after warm-up: "
                 f"{num(slope)} MiB/min)")
    if known and max(known) - min(known) < 20:  # keep noise from looking like growth
        middle = (max(known) + min(known)) / 2
        top.set_ylim(middle - 10, middle + 10)
    warm = plan["warmup_s"] / 60
    for ax in (top, bottom):
        ax.axvspan(0, warm, color="grey", alpha=0.15, lw=0)
        ax.grid(True, alpha=0.3)
    top.text(warm / 2, 0.97, "warm-up\n(not in the slope)", transform=top.get_xaxis_transform(),
             ha="center", va="top", fontsize=8, color="dimgrey")
    top.set_ylabel("RSS (MiB)")
    top.set_title(f"soak: {plan['engine']}, {plan['services']} services, {plan['rate']}/s "
                  f"for {plan['minutes']:g} min")
    top.legend(fontsize=7, loc="lower right")
    mids = [(r["t_start_s"] + r["t_end_s"]) / 120 for r in rows]
    for key, style, label in (("p99_ms", "-o", "p99"), ("p50_ms", "--s", "p50")):
        values = [r[key] if r[key] is not None else np.nan for r in rows]
        bottom.plot(mids, values, style, ms=3, lw=1.2, label=f"{label} of the window")
    bottom.set_yscale("log")
    bottom.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    bottom.set_ylabel("publish -> in force everywhere (ms, log)")
    bottom.set_xlabel("minutes since the first publish")
    bottom.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def _md_table(columns: Sequence[Col], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    return [line([c.header for c in columns]),
            line(["---:" if c.is_numeric else "---" for c in columns]),
            *(line(r) for r in rows)]


def _service_rows(soak: Mapping[str, Any]) -> tuple[list[Col], list[list[str]]]:
    cols = [Col("service"), Col("RSS start", "MiB"), Col("after warm-up", "MiB"),
            Col("end", "MiB"), Col("slope", "MiB/min"), Col("max-min", "MiB"),
            Col("CPU", "cores"), Col("applied", "/s"), Col("lost", "events")]
    rows = []
    windows = soak["windows"]
    for service, r in sorted(soak["rss"]["per_service"].items()):
        cpu = [w["cpu_cores"].get(service) for w in windows]
        cpu_known = [c for c in cpu if c is not None]
        rows.append([
            service, num(r["start_mib"]), num(r["after_warmup_mib"]), num(r["end_mib"]),
            num(r["slope_mib_per_min"]), num(r["max_minus_min_mib"]),
            num(statistics.fmean(cpu_known)) if cpu_known else "-",
            num(soak["rates"]["applied_per_s"].get(service)),
            num(soak["lost"]["by_service"].get(service, 0)),
        ])
    return cols, rows


def headline(soak: Mapping[str, Any]) -> list[str]:
    """The soak's figures in a few lines (markdown list items)."""
    plan = soak["plan"]
    lat = soak["latency"]
    lost = soak["lost"]
    return [
        f"- acknowledged events: {lost['acknowledged']:,}; **lost: {lost['lost']:,}**; "
        f"failed publishes: {lost['failed_publishes']:,}; admin check: "
        f"{'ok' if soak['admin'].get('ok') else 'FAILED'}",
        f"- in force everywhere, whole soak: p50 {num(lat['overall']['p50_ms'])} ms, p99 "
        f"{num(lat['overall']['p99_ms'])} ms, max {num(lat['overall']['max_ms'])} ms",
        f"- per {plan['window_s']:g} s window: p50 {num(lat['window_p50_ms']['min'])} to "
        f"{num(lat['window_p50_ms']['max'])} ms, p99 {num(lat['window_p99_ms']['min'])} to "
        f"{num(lat['window_p99_ms']['max'])} ms; p99 last third / first third: "
        f"{num(lat['p99_last_third_over_first'])}",
        f"- RSS after the first {plan['warmup_s']:g} s: slope up to "
        f"{num(soak['rss']['max_slope_mib_per_min'])} MiB/min",
        f"- load average (1 min) during the run: {num(soak['loadavg_1m']['min'])} to "
        f"{num(soak['loadavg_1m']['max'])} (mean {num(soak['loadavg_1m']['mean'])}), on "
        f"{os.cpu_count()} cores shared with the broker, the publisher and other work",
    ]


def render_markdown(soak: Mapping[str, Any]) -> str:
    plan = soak["plan"]
    lines = [
        f"# Soak: {plan['minutes']:g} min at {plan['rate']}/s, {plan['services']} services "
        f"({plan['engine']})",
        "",
        *headline(soak),
        "",
    ]
    cols, rows = _service_rows(soak)
    lines += _md_table(cols, rows)
    services = sorted(soak["rss"]["per_service"])
    wcols = [Col("t", "s"), Col("published", "events"), Col("p50", "ms"), Col("p99", "ms"),
             Col("max", "ms"), *(Col(f"RSS {s}", "MiB") for s in services),
             Col("services CPU", "cores"), Col("broker CPU", "cores"), Col("load", "1 min")]
    wrows = []
    for w in soak["windows"]:
        cores = [c for c in w["cpu_cores"].values() if c is not None]
        wrows.append([num(w["t_end_s"], 0), num(w["published"]), num(w["p50_ms"]),
                      num(w["p99_ms"]), num(w["max_ms"]),
                      *(num(w["rss_mib"].get(s)) for s in services),
                      num(sum(cores)) if cores else "-", num(w["broker_cores"]),
                      num(w["loadavg_1m"])])
    lines += ["", "Per window (events by publish time; RSS at the window's end):", ""]
    lines += _md_table(wcols, wrows)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the run


@contextlib.contextmanager
def kafka_only() -> Iterator[tuple[Services, int | None]]:
    """``KAFKA_BOOTSTRAP_SERVERS`` when set, else a local single-node broker; no Redis."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if bootstrap:
        version = probe_external_kafka(bootstrap, 30.0)
        yield (Services(bootstrap, "", version, "env"),
               listening_pid(bootstrap.split(",")[0]))
        return
    with KafkaBroker() as broker:
        yield Services(broker.bootstrap, "", broker.version, "local", broker), broker.pid


def measure(ctx: SweepContext, plan: SoakPlan, ui: ProgressUI) -> dict[str, Any]:
    """Start the services, publish for the soak's duration, sample, drain, check."""
    with _admin_port_any():
        group, publisher, reader, _bare = start_group(ctx, plan.engine, plan.services)
    try:
        ports = admin_ports(group)
        services = group.spec.services
        ledger = Ledger()
        factory = ShortLivedEvents(f"{group.spec.prefix}-soak", seed=plan.seed,
                                   lifetime_s=plan.lifetime_s)
        stop = threading.Event()
        outcome: dict[str, Any] = {}

        def publish() -> None:
            try:
                outcome["result"] = publish_paced(ledger.sender(publisher), plan.step(), factory,
                                                  max_batch=plan.max_batch, stop=stop)
            except Exception as exc:  # reported in the results; the soak stops
                outcome["error"] = f"{type(exc).__name__}: {exc}"

        reader.read_to_end(timeout=15)  # probes: not the soak's
        applied = Applied()
        t0 = time.monotonic()
        windows = Windows(plan, time.time_ns())
        samples = [take_sample(0.0, group, ports, ctx.broker_pid)]
        thread = threading.Thread(target=publish, name="soak-publisher", daemon=True)
        thread.start()
        pending: list[Acked] = []
        cursor = 0
        task = ui.task(f"soak: {plan.engine} x{plan.services} at {plan.rate}/s",
                       total=plan.windows)
        try:
            for k in range(plan.windows):
                tick = t0 + (k + 1) * plan.window_s
                while (now := time.monotonic()) < tick:
                    for item in reader.poll(min(0.5, max(0.01, tick - now))):
                        applied.add(item)
                group.check_alive()
                fresh = ledger.since(cursor)
                cursor += len(fresh)
                for e in fresh:
                    windows.published[windows.index(e.published_ns)] += 1
                pending = resolve(pending + fresh, applied, services, windows)
                samples.append(take_sample(time.monotonic() - t0, group, ports,
                                           ctx.broker_pid))
                task.update(k + 1)
                s = samples[-1]
                rss = "/".join(f"{v:.0f}" if v is not None else "-" for v in s.rss_mib.values())
                prev = windows.recorders[k - 1].summary() if k else {}
                ui.log(f"soak {s.t_s:6.0f} s: acked {cursor:,}, pending {len(pending):,}, "
                       f"RSS {rss} MiB, load {s.loadavg_1m:.1f}"
                       + (f", window {k - 1} p50 {num(prev['p50_ms'])} ms p99 "
                          f"{num(prev['p99_ms'])} ms" if prev.get("count") else ""))
                if "error" in outcome:
                    break
            else:
                # A publisher that fell behind its schedule finishes it (bounded by
                # publish_paced's own limit): the soak publishes every planned event.
                thread.join(plan.duration_s * 0.5 + 10)
        finally:
            stop.set()
            thread.join(30)
            task.done()
        fresh = ledger.since(cursor)
        for e in fresh:
            windows.published[windows.index(e.published_ns)] += 1
        pending = resolve(pending + fresh, applied, services, windows)
        drain: dict[str, Any] = {"drain": "complete", "drain_wait_s": 0.0}
        if pending:
            task = ui.task("soak: waiting until every service applied every event",
                           total=len(services))
            result, applied = reader.wait_applied(
                {e.event_id: (e.partition, e.offset) for e in pending}, services,
                timeout=plan.drain_timeout, stall=plan.stall_timeout, applied=applied,
                on_progress=task.update)
            task.done()
            drain = result.to_dict()
            pending = resolve(pending, applied, services, windows)
        events = ledger.since(0)
        by_service = {s: sum(1 for e in pending
                             if applied.applied_ns(s, e.event_id, (e.partition, e.offset))
                             is None) for s in services}
        task = ui.task("soak: asking every service through /revocast", total=None)
        admin = check_admin(ports, events, sample=plan.inspect_sample, seed=plan.seed)
        task.done()
        published = outcome.get("result")
        soak = {
            "plan": plan.to_dict(),
            "services_ready_after_s": round(group.ready_after_s or 0.0, 2),
            "publish": published.to_dict() if published is not None else None,
            "publish_error": outcome.get("error"),
            **summarize(plan, samples, windows, services),
            "lost": {
                "acknowledged": len(events),
                "lost": len(pending),
                "by_service": by_service,
                "failed_publishes": ledger.failed,
                **drain,
                "definition": "acknowledged events that some service never reported applied "
                "(receipt or watermark) after the drain",
            },
            "admin": admin,
            "reports_read": applied.reports,
            "reports_invalid": reader.invalid,
        }
        soak["verdicts"] = {
            "zero_lost": soak["lost"]["lost"] == 0 and admin["ok"],
            "rss_flat": (soak["rss"]["max_slope_mib_per_min"] is not None
                         and soak["rss"]["max_slope_mib_per_min"] < RSS_FLAT_MIB_PER_MIN),
            "p99_stable": (soak["latency"]["p99_last_third_over_first"] is not None
                           and soak["latency"]["p99_last_third_over_first"] <= P99_STABLE_RATIO),
            "criteria": f"lost 0 and every admin check passed; every service's RSS slope "
            f"after warm-up < {RSS_FLAT_MIB_PER_MIN:g} MiB/min; last third's p99 <= "
            f"{P99_STABLE_RATIO:g} x the first third's",
        }
        return soak
    finally:
        reader.close()
        publisher.close()
        group.stop()


def run_soak(plan: SoakPlan, out_dir: Path, *, console: Console | None = None) -> int:
    """Run ``plan``; write ``results.json`` (``soak`` section), ``soak.md``, ``soak.png``.
    Returns 0 when nothing was lost and no part failed, else 1 (130 when interrupted)."""
    console = console or Console()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "logs").mkdir(exist_ok=True)
    run_id = new_run_id()
    secrets_dir = Path(tempfile.mkdtemp(prefix="revocast-soak-"))
    signer = SigningKey.generate(f"bench-{run_id}")
    jwks_path = secrets_dir / "jwks.json"
    jwks_path.write_text(json.dumps(KeySet.of([signer]).to_jwks()))
    bench_plan = plan.bench_plan()
    errors: list[str] = []
    soak: dict[str, Any] = {}
    environment: dict[str, Any] = {}
    begin = time.monotonic()
    try:
        with (_sigterm_as_interrupt(), Children() as children,
              ProgressUI(console, 1) as ui, kafka_only() as (services, broker_pid)):
            environment = _environment(services, bench_plan)
            environment["redis_url"] = None
            ui.log(f"[bold]revocast soak[/]: {plan.engine}, {plan.services} services, "
                   f"{plan.rate}/s for {plan.minutes:g} min; Kafka {services.kafka_version} at "
                   f"{services.kafka_bootstrap} ({services.source}) -> {out_dir}")
            ctx = SweepContext(bootstrap=services.kafka_bootstrap, plan=bench_plan,
                               run_id=run_id, signer=signer, jwks_path=jwks_path,
                               out_dir=out_dir, children=children, broker_pid=broker_pid, ui=ui)
            try:
                soak = measure(ctx, plan, ui)
            except Exception as exc:
                errors.append(f"soak: {type(exc).__name__}: {exc}")
                ui.log(f"[red]soak failed:[/] {type(exc).__name__}: {exc}")
            finally:
                _delete_run_topics(services.kafka_bootstrap, run_id)
            ui.advance()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: every child process was stopped[/]")
        return 130
    finally:
        shutil.rmtree(secrets_dir, ignore_errors=True)
    if soak.get("publish_error"):
        errors.append(f"publisher: {soak['publish_error']}")
    environment["loadavg_at_end"] = round(os.getloadavg()[0], 2)
    files: list[str] = []
    if soak:
        try:
            files.append(plot_soak(soak, out_dir / "soak.png").name)
        except Exception as exc:
            errors.append(f"plot: {type(exc).__name__}: {exc}")
        (out_dir / "soak.md").write_text(render_markdown(soak))
        files.append("soak.md")
        soak["files"] = files
    results = {"schema": "revocast-bench-soak/1", "mode": "soak", "environment": environment,
               "soak": soak or {"error": "not measured"}, "errors": errors,
               "timings_s": {"total": round(time.monotonic() - begin, 2)}}
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    if soak:
        cols, rows = _service_rows(soak)
        print_table(console, f"soak: {plan.engine}, {plan.services} services, {plan.rate}/s, "
                    f"{plan.minutes:g} min", cols, rows,
                    caption="\n".join(headline(soak)))
    for item in errors:
        console.print(f"[red]error:[/] {item}")
    console.print(f"results: {out_dir / 'results.json'}, {out_dir / 'soak.md'}")
    lost = soak.get("lost", {}).get("lost") if soak else None
    return 0 if not errors and lost == 0 and soak["admin"]["ok"] else 1


def soak_main(out_dir: Path, *, engine: str | None, minutes: float) -> int:
    """``python -m bench --soak``: the soak alone, on ``engine`` (default: the best here)."""
    usable = {e.name: e for e in available_engines()}
    name = engine or default_engine()
    if name is None or name not in usable or not usable[name].available:
        reason = usable[name].reason if name in usable else "unknown or none installed"
        print(f"python -m bench: error: soak engine {name}: {reason}", file=sys.stderr)
        return 2
    if not minutes > 0:
        print("python -m bench: error: --soak-minutes must be positive", file=sys.stderr)
        return 2
    return run_soak(SoakPlan(engine=name, minutes=minutes), out_dir)
