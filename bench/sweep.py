"""The propagation sweep: for each engine and N, start N services, then each rate step.

One step: note the receipts topic's end offsets, publish at the step's rate
(:func:`bench.load.publish_paced`), wait until N receipts per acknowledged
event have been written (or the drain times out / stalls), then read the
receipts and join them with what was published
(:func:`bench.stats.in_force_everywhere`). CPU use of the services, the broker
and the harness is sampled from ``/proc`` over publish + drain.

A step whose receipts did not all arrive leaves a backlog behind; the group is
then restarted on fresh topics so the next step starts clean (and the step says
``drain: timeout|stalled``).

Beside the first group of each engine (the smallest N) runs that engine's bare
Kafka client (:mod:`bench.bareclient`) on the same events topic: its CPU per
record, over the same steps and the same records, is the floor the service's
CPU per event is compared with (``service_cpu_us_per_event``). It costs that
group up to half a core at 1,000/s, which the step's CPU figures show.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.engines import engine as engine_info
from bench.load import EventFactory, PublishOutcome, publish_paced
from bench.plan import BenchPlan, RateStep
from bench.processes import Child, Children, cpu_seconds, self_cpu_seconds
from bench.profiling import parse_collapsed, record_py_spy
from bench.receipts import ReceiptReader
from bench.services import GroupSpec, ServiceGroup
from bench.stats import InForceResult, in_force_everywhere
from producer import RevocationPublisher, ensure_topics
from schemas import SigningKey

__all__ = [
    "StepResult",
    "SweepContext",
    "config_key",
    "cpu_cores",
    "new_run_id",
    "run_engine_sweep",
    "start_group",
    "step_entry",
]


def config_key(engine: str, n: int, rate: str) -> str:
    return f"{engine}|N={n}|R={rate}"


@dataclass
class SweepContext:
    bootstrap: str
    plan: BenchPlan
    run_id: str
    signer: SigningKey
    jwks_path: Path
    out_dir: Path
    children: Children
    broker_pid: int | None
    ui: Any
    """Anything with ``task(description, total)`` returning an object with ``update``."""
    redis_url: str | None = None
    stop_check: Callable[[], None] = lambda: None
    counter: itertools.count[int] = field(default_factory=itertools.count)


@dataclass
class StepResult:
    engine: str
    n: int
    step: RateStep
    entry: dict[str, Any]
    inforce: InForceResult


def _cpu_snapshot(group: ServiceGroup, broker_pid: int | None) -> dict[str, float]:
    return {
        "wall": time.monotonic(),
        "services": group.cpu_seconds(),
        "broker": (cpu_seconds(broker_pid) or 0.0) if broker_pid else 0.0,
        "harness": self_cpu_seconds(),
    }


def cpu_cores(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    wall = max(1e-6, after["wall"] - before["wall"])
    out = {
        f"{k}_cores": round((after[k] - before[k]) / wall, 3)
        for k in ("services", "broker", "harness")
    }
    out["total_cores"] = round(sum(out.values()), 3)
    out["window_s"] = round(wall, 3)
    return out


class BareClient:
    """The engine's bare Kafka client, counting the events topic's records (live)."""

    def __init__(self, ctx: SweepContext, engine: str, topic: str, prefix: str) -> None:
        self.client = engine_info(engine).bare_client
        self.status = ctx.out_dir / "logs" / f"{prefix}.bare.status.json"
        cmd = [sys.executable, "-m", "bench.bareclient", "--client", self.client,
               "--bootstrap", ctx.bootstrap, "--topic", topic, "--live", str(self.status)]
        self.child = ctx.children.start(Child(
            f"bare:{self.client}", cmd, env=dict(os.environ),
            log_path=ctx.out_dir / "logs" / f"{prefix}.bare.log"))
        self.ctx = ctx

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.status.is_file():
            if not self.child.alive:
                raise RuntimeError(f"bare {self.client} client exited: {self.child.log_tail(4)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"bare {self.client} client not ready after {timeout:g} s")
            time.sleep(0.05)

    def read(self) -> dict[str, float]:
        for _ in range(20):
            try:
                data: dict[str, float] = json.loads(self.status.read_text())
                return data
            except (OSError, ValueError):
                time.sleep(0.02)
        return {"records": 0, "cpu_s": 0.0}

    def stop(self) -> None:
        self.child.stop(5)
        self.ctx.children.items = [c for c in self.ctx.children.items if c is not self.child]


def _bare_delta(before: dict[str, float], after: dict[str, float], client: str,
                events: int) -> dict[str, Any]:
    records = int(after.get("records", 0) - before.get("records", 0))
    cpu = after.get("cpu_s", 0.0) - before.get("cpu_s", 0.0)
    return {
        "client": client,
        "records": records,
        "events": events,
        "cpu_s": round(cpu, 4),
        # publish_many packs a partition's events into batch records: per event is the
        # figure to set beside the service's CPU per event; per record is the client's own.
        "cpu_us_per_event": round(cpu / events * 1e6, 1) if events else None,
        "cpu_us_per_record": round(cpu / records * 1e6, 1) if records else None,
        "method": "getrusage(RUSAGE_SELF) of a process that assigns every partition and "
        "counts records; same topic, same step",
    }


def start_group(
    ctx: SweepContext, engine: str, n: int, *, bare: bool = False
) -> tuple[ServiceGroup, Any, Any, BareClient | None]:
    prefix = f"bench-{ctx.run_id}-{engine_info(engine).short}-n{n}-{next(ctx.counter)}"
    spec = GroupSpec(
        engine=engine,
        n=n,
        bootstrap=ctx.bootstrap,
        prefix=prefix,
        jwks_path=ctx.jwks_path,
        logs_dir=ctx.out_dir / "logs",
    )
    ensure_topics(
        ctx.bootstrap,
        spec.topics,
        partitions=ctx.plan.partitions,
        max_credential_lifetime=timedelta(hours=3),
        receipts_retention=timedelta(hours=3),
        timeout=20.0,
    )
    group = ServiceGroup(spec, ctx.children)
    publisher = reader = None
    bare_client: BareClient | None = None
    try:
        group.start()
        if bare:
            bare_client = BareClient(ctx, engine, spec.topics.events, prefix)
        publisher = RevocationPublisher(
            ctx.bootstrap,
            spec.topics,
            ctx.signer,
            issuer="bench",
            client_id=f"revocast-bench-{prefix}",
            delivery_timeout=30.0,
            connect_timeout=15.0,
        )
        reader = ReceiptReader(ctx.bootstrap, spec.topics.receipts)
        task = ctx.ui.task(f"{engine} N={n}: starting services", total=n)
        group.wait_ready(
            publisher, reader, timeout=ctx.plan.ready_timeout, on_progress=task.update
        )
        task.done()
        if bare_client is not None:
            bare_client.wait_ready(ctx.plan.ready_timeout)
        reader.read_to_end(timeout=15)
        if ctx.plan.warmup is not None:
            _warm_up(ctx, engine, n, group, publisher, reader, ctx.plan.warmup)
    except BaseException:
        if reader is not None:
            reader.close()
        if publisher is not None:
            publisher.close()
        if bare_client is not None:
            bare_client.stop()
        group.stop()
        raise
    return group, publisher, reader, bare_client


def _warm_up(
    ctx: SweepContext,
    engine: str,
    n: int,
    group: ServiceGroup,
    publisher: RevocationPublisher,
    reader: ReceiptReader,
    step: RateStep,
) -> None:
    """Publish ``step`` and wait for its receipts; nothing is recorded."""
    task = ctx.ui.task(f"{engine} N={n}: warm-up ({step.label}/s, not recorded)",
                       total=step.planned_events)
    factory = EventFactory(f"{group.spec.prefix}-warmup", seed=ctx.plan.seed)
    outcome = publish_paced(publisher, step, factory, max_batch=ctx.plan.max_batch,
                            on_progress=task.update)
    reader.wait_applied(outcome.positions, group.spec.services,
                        timeout=ctx.plan.drain_timeout, stall=ctx.plan.stall_timeout)
    task.done()


def run_engine_sweep(
    ctx: SweepContext, engine: str, on_result: Callable[[StepResult], None]
) -> None:
    groups = ctx.plan.groups()
    for index, (n, steps) in enumerate(groups):
        ctx.stop_check()
        bare = index == 0
        group, publisher, reader, bare_client = start_group(ctx, engine, n, bare=bare)
        try:
            for i, step in enumerate(steps):
                ctx.stop_check()
                result, clean = _run_step(ctx, engine, n, step, group, publisher, reader,
                                          bare_client)
                on_result(result)
                if not clean and i + 1 < len(steps):
                    reader.close()
                    publisher.close()
                    if bare_client is not None:
                        bare_client.stop()
                    group.stop()
                    group, publisher, reader, bare_client = start_group(
                        ctx, engine, n, bare=bare)
        finally:
            reader.close()
            publisher.close()
            if bare_client is not None:
                bare_client.stop()
            group.stop()


def step_entry(
    engine: str,
    n: int,
    step: RateStep,
    outcome: PublishOutcome,
    result: InForceResult,
    cpu: dict[str, Any],
    drain: dict[str, Any],
) -> dict[str, Any]:
    """One results.json entry of ``in_force_everywhere`` (or of ``peers``)."""
    summary = result.everywhere.summary()
    events = len(outcome.published)
    services_s = (cpu.get("services_cores") or 0.0) * cpu.get("window_s", 0.0)
    return {
        "engine": engine,
        "n": n,
        "rate": step.label,
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "max_ms": summary["max_ms"],
        "events": events,
        "complete_events": result.complete,
        "incomplete_events": result.incomplete,
        "missing_receipts": result.missing_receipts,
        **outcome.to_dict(),
        "in_force_everywhere": summary,
        "per_service": {s: rec.summary() for s, rec in result.per_service.items()},
        **drain,
        "cpu": cpu,
        "service_cpu_us_per_event": (
            round(services_s / (n * events) * 1e6, 1) if events else None
        ),
        "hdr_in_force_us": result.everywhere.encoded(),
        # The machine is shared: how busy it was, as the step ended (1-minute average).
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def _run_step(
    ctx: SweepContext,
    engine: str,
    n: int,
    step: RateStep,
    group: ServiceGroup,
    publisher: RevocationPublisher,
    reader: ReceiptReader,
    bare_client: BareClient | None = None,
) -> tuple[StepResult, bool]:
    plan = ctx.plan
    headline = (n, step.rate) == plan.headline
    services = group.spec.services
    factory = EventFactory(f"{group.spec.prefix}-r{step.label}", seed=plan.seed + n)
    reader.read_to_end(timeout=15)  # reports of earlier steps: not this step's

    spy = None
    spy_out = ctx.out_dir / f"profile-service-{engine}.collapsed.txt"
    if headline and plan.profile_service:
        pid = group.members[services[0]].pid
        if pid is not None:
            spy = record_py_spy(pid, step.duration, spy_out)

    task = ctx.ui.task(
        f"{engine} N={n} R={step.label}: publishing", total=step.planned_events
    )
    before = _cpu_snapshot(group, ctx.broker_pid)
    bare_before = bare_client.read() if bare_client is not None else None
    outcome = publish_paced(
        publisher, step, factory, max_batch=plan.max_batch, on_progress=task.update
    )
    task.reset(f"{engine} N={n} R={step.label}: waiting until every service applied it",
               total=n)
    drain, applied = reader.wait_applied(
        outcome.positions,
        services,
        timeout=plan.drain_timeout,
        stall=plan.stall_timeout,
        on_progress=task.update,
    )
    after = _cpu_snapshot(group, ctx.broker_pid)
    bare_after = None
    if bare_client is not None:
        time.sleep(0.3)  # one status period: the bare client has written its latest count
        bare_after = bare_client.read()
    task.done()
    result = in_force_everywhere(
        outcome.published,
        applied.latencies(outcome.published, outcome.positions, services),
        services,
        keep_raw=headline,
    )
    entry = step_entry(engine, n, step, outcome, result, cpu_cores(before, after),
                       drain.to_dict())
    entry["kind"] = "revocast"
    entry["services_ready_after_s"] = round(group.ready_after_s or 0.0, 3)
    if bare_client is not None and bare_before is not None and bare_after is not None:
        entry["bare_client"] = _bare_delta(bare_before, bare_after, bare_client.client,
                                           len(outcome.published))
    if spy is not None:
        try:
            _, err = spy.communicate(timeout=step.duration + 30)
        except Exception:
            spy.kill()
            err = b"timed out"
        if spy.returncode == 0 and spy_out.is_file():
            entry["service_profile"] = {
                "profiler": "py-spy record --nonblocking (all threads, idle excluded)",
                "service": services[0],
                "file": spy_out.name,
                **parse_collapsed(spy_out.read_text().splitlines()),
            }
        else:
            entry["service_profile"] = {
                "error": (err or b"").decode(errors="replace").strip()[-300:]
                or f"py-spy exit {spy.returncode}"
            }
    return StepResult(engine, n, step, entry, result), drain.complete


def new_run_id() -> str:
    return uuid.uuid4().hex[:6]
