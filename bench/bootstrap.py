"""Bootstrap cost: how long, and how much memory, a new service needs to replay history.

For each size S in the plan, a topic is filled once with S signed revocations
(:mod:`bench.retained`: signed by one Python worker per core, loaded by Kafka's
ConsoleProducer; the smaller topics hold a prefix of the largest), then fresh
processes replay it (:mod:`bench.replay`): a
:class:`consumers.RevocationConsumer` (verify + decode + apply, until ready) and,
on the smallest topic, the bare client of every engine (:mod:`bench.bareclient`,
raw consume). Their rates, measured in the same run on the same records, give
"apply rate vs raw consume rate". A third, smaller topic is replayed under
pyinstrument to show where the apply time goes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.e2e import find_java
from bench.processes import Child, Children
from bench.profiling import parse_collapsed, record_py_spy
from bench.retained import load_topic
from devstack import ensure_kafka_jars
from producer import ensure_topics
from schemas import TopicNames

__all__ = ["run_bootstrap", "run_json_child"]


LATE_PROFILE_AFTER_S = 120.0
"""Long enough into a million-record replay to be past its first 200k events (the size of
the consumer's duplicate-suppression set), where a replay's cost per event can change."""
LATE_PROFILE_FOR_S = 5.0


def run_json_child(
    children: Children,
    name: str,
    cmd: list[str],
    log: Path,
    timeout: float,
    *,
    late_profile: Path | None = None,
) -> dict[str, Any]:
    """Run ``cmd`` as a managed child; return the last JSON object it printed.

    With ``late_profile``, a child still running after :data:`LATE_PROFILE_AFTER_S`
    seconds is sampled by py-spy for :data:`LATE_PROFILE_FOR_S` seconds (when py-spy
    is installed): what a long replay spends its time on once it is well under way.
    The summary is added to the result as ``late_profile``.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REVOCAST_REDIS_URL")}
    env["PYTHONUNBUFFERED"] = "1"
    child = children.start(Child(name, cmd, env=env, log_path=log))
    spy = None
    try:
        assert child.proc is not None
        if late_profile is not None and timeout > LATE_PROFILE_AFTER_S:
            try:
                child.proc.wait(LATE_PROFILE_AFTER_S)
            except subprocess.TimeoutExpired:
                spy = record_py_spy(child.proc.pid, LATE_PROFILE_FOR_S, late_profile)
        child.proc.wait(max(1.0, timeout - (time.monotonic() - (child.started_at or 0.0))))
    except BaseException:
        child.stop(5)
        raise
    finally:
        child.wait_stopped(0)
        children.items = [c for c in children.items if c is not child]
        if spy is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(LATE_PROFILE_FOR_S + 20)
            if spy.poll() is None:
                spy.kill()
                spy.wait()
    text = log.read_text(errors="replace")
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            data: dict[str, Any] = json.loads(line)
            if spy is not None and late_profile is not None and late_profile.is_file():
                data["late_profile"] = {
                    "profiler": f"py-spy, {LATE_PROFILE_FOR_S:g} s starting "
                    f"{LATE_PROFILE_AFTER_S:g} s into the replay, every thread",
                    "file": late_profile.name,
                    **parse_collapsed(late_profile.read_text().splitlines()),
                }
            return data
    raise RuntimeError(f"{name} printed no result (exit {child.returncode}): {child.log_tail(4)}")


def _load_batches(
    bootstrap: str, prefix: str, events: int, per_record: int, *, key_file: Path,
    partitions: int, scratch: Path, logs: Path, children: Children, timeout: float, ui: Any,
) -> dict[str, Any]:
    """Sign ``events`` retained revocations as batch records and load them into a topic."""
    ensure_topics(bootstrap, TopicNames.prefixed(prefix), partitions=partitions,
                  max_credential_lifetime=timedelta(hours=5),
                  receipts_retention=timedelta(hours=1), timeout=20.0)
    task = ui.task(f"bootstrap: signing {events:,} revocations in batch records", total=None)
    lines = scratch / "batches.tsv"
    cmd = [
        sys.executable, "-m", "bench.retained",
        "--key-file", str(key_file), "--first", "0", "--last", str(events),
        "--batch", str(per_record), "--out", str(lines),
    ]  # fmt: skip
    out = run_json_child(children, "retained-batch", cmd, logs / "retained-batch.log", timeout)
    task.done()
    task = ui.task("bootstrap: loading the batch records (Kafka ConsoleProducer)", total=None)
    loaded = load_topic(find_java(), ensure_kafka_jars(), bootstrap,
                        TopicNames.prefixed(prefix).events, [lines], int(out["lines"]),
                        timeout=timeout, log_path=logs / "load-batch.log")
    task.done()
    return loaded


def run_bootstrap(
    *,
    bootstrap: str,
    run_id: str,
    sizes: tuple[int, ...],
    profile_records: int,
    partitions: int,
    key_file: Path,
    jwks_path: Path,
    out_dir: Path,
    children: Children,
    timeout: float,
    ui: Any,
    bare_clients: tuple[str, ...] = ("kafka-python",),
    batch_events: int = 0,
    apply_engines: tuple[str, ...] = (),
    redis_url: str | None = None,
) -> dict[str, Any]:
    """``batch_events`` > 1: also replay the smallest size as batch records of that many
    events each (one signature per record, as ``publish_many`` writes them).
    ``apply_engines``: RevocationConsumer engines besides kafka-python whose apply rate is
    measured on the smallest size. ``redis_url``: the largest size is replayed a second
    time from the snapshot the first replay saved (ready from a snapshot vs cold)."""
    logs = out_dir / "logs"
    prefixes = {size: f"bench-{run_id}-boot-{size}" for size in sizes}
    targets = [(size, TopicNames.prefixed(p)) for size, p in prefixes.items()]
    if profile_records <= 0:
        profile_prefix = None
    elif profile_records in prefixes:
        profile_prefix = prefixes[profile_records]
    else:
        profile_prefix = f"bench-{run_id}-boot-profile"
        targets.append((profile_records, TopicNames.prefixed(profile_prefix)))
    for _, names in targets:
        ensure_topics(
            bootstrap,
            names,
            partitions=partitions,
            max_credential_lifetime=timedelta(hours=5),
            receipts_retention=timedelta(hours=1),
            timeout=20.0,
        )
    largest = max(*sizes, profile_records)
    workers = max(1, min(2, os.cpu_count() or 1))
    bounds = [largest * k // workers for k in range(workers + 1)]
    scratch = Path(tempfile.mkdtemp(prefix="revocast-bench-retained-"))
    try:
        task = ui.task(f"bootstrap: signing {largest:,} revocations ({workers} workers)",
                       total=None)
        begin = time.monotonic()
        procs: list[Child] = []
        files: list[Path] = []
        for k in range(workers):
            lines = scratch / f"slice-{k}.tsv"
            files.append(lines)
            cmd = [
                sys.executable, "-m", "bench.retained",
                "--key-file", str(key_file),
                "--first", str(bounds[k]),
                "--last", str(bounds[k + 1]),
                "--out", str(lines),
            ]  # fmt: skip
            procs.append(children.start(
                Child(f"retained-{k}", cmd, env=dict(os.environ),
                      log_path=logs / f"retained-{k}.log")
            ))
        try:
            for child in procs:
                assert child.proc is not None
                code = child.proc.wait(max(1.0, timeout - (time.monotonic() - begin)))
                if code != 0:
                    raise RuntimeError(f"{child.name} failed (exit {code}): {child.log_tail(4)}")
        finally:
            for child in procs:
                child.stop(5)
            children.items = [c for c in children.items if c not in procs]
        sign_s = time.monotonic() - begin
        task.done()

        java = find_java()
        jars = ensure_kafka_jars()
        load_begin = time.monotonic()
        task = ui.task(
            f"bootstrap: loading {len(targets)} topics (Kafka ConsoleProducer)", total=None
        )
        # One JVM per topic, all at once: most of each one's time is JVM start-up.
        jvms: list[subprocess.Popen[bytes]] = []
        with ThreadPoolExecutor(max_workers=len(targets)) as pool:
            futures = [
                pool.submit(
                    load_topic, java, jars, bootstrap, names.events, files, size,
                    timeout=timeout, log_path=logs / f"load-{size}.log", started=jvms,
                )
                for size, names in targets
            ]
            try:
                loads = [f.result() for f in futures]
            except BaseException:
                for jvm in jvms:  # Ctrl-C or a failed load: stop the others now
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(jvm.pid, signal.SIGKILL)
                raise
        task.done()
        load_s = time.monotonic() - load_begin
        batch_prefix = None
        if batch_events > 1:
            batch_prefix = f"bench-{run_id}-boot-batch"
            _load_batches(bootstrap, batch_prefix, min(sizes), batch_events,
                          key_file=key_file, partitions=partitions, scratch=scratch, logs=logs,
                          children=children, timeout=timeout, ui=ui)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    def replay_cmd(mode: str, prefix: str, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "bench.replay",
            "--mode", mode,
            "--bootstrap", bootstrap,
            "--prefix", prefix,
            "--jwks", str(jwks_path),
            "--timeout", str(timeout),
            *extra,
        ]  # fmt: skip

    results: list[dict[str, Any]] = []
    for size in sizes:
        prefix = prefixes[size]
        entry: dict[str, Any] = {"size": size}
        # The raw baselines once, on the smallest topic: raw consume of a million records
        # with a pure-Python client takes minutes.
        if size == min(sizes):
            entry["raw_by_client"] = {}
            for client in bare_clients:
                task = ui.task(f"bootstrap: raw {client} replay of {size:,}", total=None)
                cmd = [
                    sys.executable, "-m", "bench.bareclient", "--client", client, "--replay",
                    "--bootstrap", bootstrap, "--topic", TopicNames.prefixed(prefix).events,
                    "--timeout", str(timeout),
                ]  # fmt: skip
                try:
                    entry["raw_by_client"][client] = run_json_child(
                        children, f"replay-raw-{client}-{size}", cmd,
                        logs / f"replay-raw-{client}-{size}.log", timeout + 30)
                except (RuntimeError, json.JSONDecodeError) as exc:
                    entry["raw_by_client"][client] = {"error": str(exc)}
                task.done()
            if "kafka-python" in entry["raw_by_client"]:
                entry["raw"] = entry["raw_by_client"]["kafka-python"]
        snap = ("--snapshot-redis", redis_url) if redis_url and size == max(sizes) else ()
        task = ui.task(f"bootstrap: apply replay of {size:,}", total=None)
        entry["apply"] = run_json_child(
            children, f"replay-apply-{size}", replay_cmd("apply", prefix, *snap),
            logs / f"replay-apply-{size}.log",
            timeout + 30, late_profile=out_dir / f"profile-replay-{size}.collapsed.txt",
        )
        task.done()
        if snap:
            task = ui.task(f"bootstrap: ready from a snapshot, {size:,} retained", total=None)
            try:
                entry["apply_from_snapshot"] = run_json_child(
                    children, f"replay-snapshot-{size}",
                    replay_cmd("apply", prefix, *snap, "--forget-snapshot"),
                    logs / f"replay-snapshot-{size}.log", timeout + 30)
            except (RuntimeError, json.JSONDecodeError) as exc:
                entry["apply_from_snapshot"] = {"error": str(exc)}
            task.done()
        if size == min(sizes) and apply_engines:
            entry["apply_by_engine"] = {}
            for eng in apply_engines:
                task = ui.task(f"bootstrap: apply replay of {size:,} on {eng}", total=None)
                try:
                    entry["apply_by_engine"][eng] = run_json_child(
                        children, f"replay-apply-{eng}-{size}",
                        replay_cmd("apply", prefix, "--engine", eng),
                        logs / f"replay-apply-{eng}-{size}.log", timeout + 30)
                except (RuntimeError, json.JSONDecodeError) as exc:
                    entry["apply_by_engine"][eng] = {"error": str(exc)}
                task.done()
        if "raw" in entry:
            raw_rate = entry["raw"].get("rate_per_s") or 0.0
            apply_rate = entry["apply"].get("rate_per_s") or 0.0
            entry["apply_vs_raw"] = round(apply_rate / raw_rate, 4) if raw_rate else None
        results.append(entry)

    batch_block: dict[str, Any] | None = None
    if batch_prefix is not None:
        task = ui.task(f"bootstrap: apply replay of {min(sizes):,} events in batch records",
                       total=None)
        try:
            result = run_json_child(
                children, "replay-apply-batch", replay_cmd("apply", batch_prefix),
                logs / "replay-apply-batch.log", timeout + 30)
        except (RuntimeError, json.JSONDecodeError) as exc:
            result = {"error": str(exc)}
        task.done()
        applied, elapsed = result.get("applied") or 0, result.get("elapsed_s") or 0.0
        batch_block = {
            "events": min(sizes),
            "events_per_record": batch_events,
            "apply": result,
            "events_per_s": round(applied / elapsed, 1) if applied and elapsed else None,
        }
        if result.get("records") and not applied:
            batch_block["error"] = (
                f"the consumer applied none of the {result.get('records')} batch records "
                f"({result.get('dead_lettered')} dead-lettered): it does not read batch records")

    if profile_prefix is None:
        profile: dict[str, Any] = {"error": "not measured (the quick run skips the profile)"}
    else:
        task = ui.task(f"bootstrap: profiling the apply path ({profile_records:,} records)",
                       total=None)
        profile_txt = out_dir / "profile-apply.txt"
        cmd = replay_cmd("profile", profile_prefix, "--profile-out", str(profile_txt))
        try:
            profile = run_json_child(
                children, "replay-profile", cmd, logs / "replay-profile.log", timeout + 30
            )
            profile["file"] = profile_txt.name
        except (RuntimeError, json.JSONDecodeError) as exc:
            profile = {"error": str(exc)}
        task.done()
    return {
        "produce": {
            "distinct_events": largest,
            "records_written": sum(load["records"] for load in loads),
            "sign_s": round(sign_s, 2),
            "sign_workers": workers,
            "load_s": round(load_s, 2),
            "loads": loads,
            "elapsed_s": round(sign_s + load_s, 2),
            "method": "signed by bench.retained workers (schemas.encode), loaded with Kafka's "
            "ConsoleProducer (parse.key=true, acks=1)",
        },
        "sizes": results,
        "batch_records": batch_block,
        "apply_profile": profile,
    }
