"""The propagation sweep: for each flavor and N, start N services, then each rate step.

One step: note the receipts topic's end offsets, publish at the step's rate
(:func:`bench.load.publish_paced`), wait until N receipts per acknowledged
event have been written (or the drain times out / stalls), then read the
receipts and join them with what was published
(:func:`bench.stats.in_force_everywhere`). CPU use of the services, the broker
and the harness is sampled from ``/proc`` over publish + drain.

A step whose receipts did not all arrive leaves a backlog behind; the group is
then restarted on fresh topics so the next step starts clean (and the step says
``drain: timeout|stalled``).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.load import EventFactory, publish_paced
from bench.plan import BenchPlan, RateStep
from bench.processes import Children, cpu_seconds, self_cpu_seconds
from bench.profiling import parse_collapsed, record_py_spy
from bench.receipts import ReceiptReader
from bench.services import GroupSpec, ServiceGroup
from bench.stats import InForceResult, in_force_everywhere
from producer import RevocationPublisher, ensure_topics
from schemas import SigningKey

__all__ = ["StepResult", "SweepContext", "config_key", "new_run_id", "run_flavor_sweep"]

_SHORT = {"kafka-python": "kp", "faust": "fa"}


def config_key(flavor: str, n: int, rate: str) -> str:
    return f"{flavor}|N={n}|R={rate}"


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
    stop_check: Callable[[], None] = lambda: None
    counter: itertools.count[int] = field(default_factory=itertools.count)


@dataclass
class StepResult:
    flavor: str
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


def _cpu_cores(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    wall = max(1e-6, after["wall"] - before["wall"])
    out = {
        f"{k}_cores": round((after[k] - before[k]) / wall, 3)
        for k in ("services", "broker", "harness")
    }
    out["total_cores"] = round(sum(out.values()), 3)
    out["window_s"] = round(wall, 3)
    return out


def _start_group(ctx: SweepContext, flavor: str, n: int) -> tuple[ServiceGroup, Any, Any]:
    prefix = f"bench-{ctx.run_id}-{_SHORT[flavor]}-n{n}-{next(ctx.counter)}"
    spec = GroupSpec(
        flavor=flavor,
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
    try:
        group.start()
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
        task = ctx.ui.task(f"{flavor} N={n}: starting services", total=n)
        group.wait_ready(
            publisher, reader, timeout=ctx.plan.ready_timeout, on_progress=task.update
        )
        task.done()
        reader.read_to_end(timeout=15)
        if ctx.plan.warmup is not None:
            _warm_up(ctx, flavor, n, group, publisher, reader, ctx.plan.warmup)
    except BaseException:
        if reader is not None:
            reader.close()
        if publisher is not None:
            publisher.close()
        group.stop()
        raise
    return group, publisher, reader


def _warm_up(
    ctx: SweepContext,
    flavor: str,
    n: int,
    group: ServiceGroup,
    publisher: RevocationPublisher,
    reader: ReceiptReader,
    step: RateStep,
) -> None:
    """Publish ``step`` and wait for its receipts; nothing is recorded."""
    task = ctx.ui.task(f"{flavor} N={n}: warm-up ({step.label}/s, not recorded)",
                       total=step.planned_events)
    base = reader.total_written()
    factory = EventFactory(f"{group.spec.prefix}-warmup", seed=ctx.plan.seed)
    outcome = publish_paced(publisher, step, factory, max_batch=ctx.plan.max_batch,
                            on_progress=task.update)
    reader.wait_written(base, n * len(outcome.published), timeout=ctx.plan.drain_timeout,
                        stall=ctx.plan.stall_timeout)
    reader.read_to_end(timeout=30)
    task.done()


def run_flavor_sweep(
    ctx: SweepContext, flavor: str, on_result: Callable[[StepResult], None]
) -> None:
    plan = ctx.plan
    for n in plan.ns:
        ctx.stop_check()
        group, publisher, reader = _start_group(ctx, flavor, n)
        try:
            steps = list(plan.steps)
            for index, step in enumerate(steps):
                ctx.stop_check()
                result, clean = _run_step(ctx, flavor, n, step, group, publisher, reader)
                on_result(result)
                if not clean and index + 1 < len(steps):
                    reader.close()
                    publisher.close()
                    group.stop()
                    group, publisher, reader = _start_group(ctx, flavor, n)
        finally:
            reader.close()
            publisher.close()
            group.stop()


def _run_step(
    ctx: SweepContext,
    flavor: str,
    n: int,
    step: RateStep,
    group: ServiceGroup,
    publisher: RevocationPublisher,
    reader: ReceiptReader,
) -> tuple[StepResult, bool]:
    plan = ctx.plan
    headline = (n, step.rate) == plan.headline
    services = group.spec.services
    factory = EventFactory(f"{group.spec.prefix}-r{step.label}", seed=plan.seed + n)
    base = reader.total_written()

    spy = None
    spy_out = ctx.out_dir / f"profile-service-{flavor}.collapsed.txt"
    if headline and plan.profile_service:
        pid = group.members[services[0]].pid
        if pid is not None:
            spy = record_py_spy(pid, step.duration, spy_out)

    task = ctx.ui.task(
        f"{flavor} N={n} R={step.label}: publishing", total=step.planned_events
    )
    before = _cpu_snapshot(group, ctx.broker_pid)
    outcome = publish_paced(
        publisher, step, factory, max_batch=plan.max_batch, on_progress=task.update
    )
    expected = n * len(outcome.published)
    task.reset(f"{flavor} N={n} R={step.label}: waiting for receipts", total=expected)
    drain = reader.wait_written(
        base,
        expected,
        timeout=plan.drain_timeout,
        stall=plan.stall_timeout,
        on_progress=task.update,
    )
    after = _cpu_snapshot(group, ctx.broker_pid)
    task.reset(f"{flavor} N={n} R={step.label}: reading receipts", total=None)
    receipts = reader.read_to_end(timeout=120)
    task.done()
    result = in_force_everywhere(
        outcome.published,
        ((r.event_id, r.service, r.latency_ns) for r in receipts),
        services,
        keep_raw=headline,
    )
    summary = result.everywhere.summary()
    entry: dict[str, Any] = {
        "flavor": flavor,
        "n": n,
        "rate": step.label,
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "max_ms": summary["max_ms"],
        "events": len(outcome.published),
        "complete_events": result.complete,
        "incomplete_events": result.incomplete,
        "missing_receipts": result.missing_receipts,
        **outcome.to_dict(),
        "in_force_everywhere": summary,
        "per_service": {s: rec.summary() for s, rec in result.per_service.items()},
        **drain.to_dict(),
        "cpu": _cpu_cores(before, after),
        "services_ready_after_s": round(group.ready_after_s or 0.0, 3),
        "hdr_in_force_us": result.everywhere.encoded(),
    }
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
    return StepResult(flavor, n, step, entry, result), drain.complete


def new_run_id() -> str:
    return uuid.uuid4().hex[:6]
