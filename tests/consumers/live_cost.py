"""CPU per live event of a consumer service, per engine and rate, beside its bare client.

Reports numbers; asserts nothing (a measuring tool, not a test). Run from the repo root:

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 .venv/bin/python -m tests.consumers.live_cost \\
        --engines kafka-python,confluent --rates 100,1000 --seconds 10

For each engine and rate, on a fresh 3-partition topic: one service process (a
:class:`consumers.RevocationConsumer` as ``revocast consume`` builds it: signed
events verified and applied, watermarks published) and, at the same time on the
same records, that engine's bare client (:mod:`bench.bareclient`: assign, count,
nothing else). Signed revocations are published at the rate, paced every 10 ms,
after a warm-up; each process reports ``getrusage(RUSAGE_SELF)`` (user + system,
every thread) and its record count, read around the measured window. Output: one
JSON object per step, then a table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

from kafka import KafkaProducer

from schemas import KeySet, SigningKey, TopicNames, encode
from tests.conftest import create_topics
from tests.consumers.conftest import make_event

_BARE = {"kafka-python": "kafka-python", "confluent": "confluent-kafka"}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve(args: argparse.Namespace) -> int:
    """The service side: a consumer in this process, status to a file every 0.2 s."""
    from consumers import RevocationConsumer

    stop = False

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    consumer = RevocationConsumer(
        args.bootstrap,
        TopicNames.prefixed(args.prefix),
        "cost",
        f"cost-{args.engine}",
        KeySet.load(args.jwks),
        engine=args.engine,
        instance_key=SigningKey.from_file(args.instance_key) if args.instance_key else None,
    ).start()
    consumer.wait_ready(60)
    status = Path(args.status)
    while not stop:
        stats = consumer.stats()
        tmp = status.with_suffix(".tmp")
        tmp.write_text(json.dumps({"records": stats.records, "applied": stats.applied,
                                   "cpu_s": _cpu_s(), "ready": consumer.ready}))
        os.replace(tmp, status)
        time.sleep(0.2)
    consumer.stop()
    return 0


def _read(path: Path, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        except (OSError, ValueError):
            time.sleep(0.05)
    raise RuntimeError(f"no status in {path}")


def step(bootstrap: str, engine: str, rate: int, seconds: float, work: Path,
         signer: SigningKey, sign_watermarks: bool,
         profile: Path | None = None) -> dict[str, Any]:
    spy = None
    prefix = f"cost-{uuid.uuid4().hex[:8]}"
    topics = TopicNames.prefixed(prefix)
    create_topics(bootstrap, topics)
    jwks = work / "jwks.json"
    jwks.write_text(json.dumps(KeySet.of([signer]).to_jwks()))
    svc_status, bare_status = work / f"svc-{prefix}.json", work / f"bare-{prefix}.json"
    cmd = [sys.executable, "-m", "tests.consumers.live_cost", "--serve", "--engine", engine,
           "--bootstrap", bootstrap, "--prefix", prefix, "--jwks", str(jwks),
           "--status", str(svc_status)]
    if sign_watermarks:
        key = work / "instance.jwk.json"
        if not key.exists():
            SigningKey.generate("cost-instance").write_private(key)
        cmd += ["--instance-key", str(key)]
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "bench.bareclient", "--client", _BARE[engine],
                          "--bootstrap", bootstrap, "--topic", topics.events,
                          "--live", str(bare_status)], env=env, stdout=subprocess.DEVNULL),
    ]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if svc_status.exists() and bare_status.exists() and _read(svc_status).get("ready"):
                break
            time.sleep(0.1)
        warm = 3.0
        total = int(rate * (seconds + warm)) + rate
        values = [encode(_envelope(i), signer) for i in range(total)]
        per_tick = rate / 100
        sent = 0.0
        begin = time.monotonic()
        marks: dict[str, dict[str, Any]] = {}
        i = 0
        while True:
            now = time.monotonic() - begin
            if now >= warm and "start" not in marks:
                marks["start"] = {"svc": _read(svc_status), "bare": _read(bare_status),
                                  "t": time.monotonic()}
                if profile is not None:
                    spy = subprocess.Popen(
                        [str(Path(sys.executable).with_name("py-spy")), "record",
                         "-p", str(procs[0].pid), "-d", str(int(seconds)),
                         "-r", "250", "-f", "raw", "-o", str(profile), "--threads"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if now >= warm + seconds:
                marks["end"] = {"svc": _read(svc_status), "bare": _read(bare_status),
                                "t": time.monotonic()}
                break
            sent += per_tick
            while i < int(sent) and i < len(values):
                producer.send(topics.events, value=values[i], key=str(i % 50).encode())
                i += 1
            producer.flush()
            time.sleep(max(0.0, 0.01 - ((time.monotonic() - begin) - now)))
    finally:
        producer.close()
        if spy is not None:
            spy.wait(60)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
    a, b = marks["start"], marks["end"]
    out: dict[str, Any] = {"engine": engine, "rate": rate, "seconds": round(b["t"] - a["t"], 2)}
    for side in ("svc", "bare"):
        records = b[side]["records"] - a[side]["records"]
        cpu = b[side]["cpu_s"] - a[side]["cpu_s"]
        out[f"{side}_records"] = records
        out[f"{side}_cpu_us_per_event"] = round(cpu / records * 1e6, 1) if records else None
    if out["svc_cpu_us_per_event"] and out["bare_cpu_us_per_event"]:
        out["ratio"] = round(out["svc_cpu_us_per_event"] / out["bare_cpu_us_per_event"], 2)
    out["loadavg"] = os.getloadavg()[0]
    return out


def _envelope(i: int) -> Any:
    from schemas import Envelope

    return Envelope.wrap(make_event(i, subjects=1000), issuer="cost")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--engine", default="kafka-python")
    parser.add_argument("--engines", default="kafka-python,confluent")
    parser.add_argument("--rates", default="100,1000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--prefix")
    parser.add_argument("--jwks")
    parser.add_argument("--status")
    parser.add_argument("--instance-key")
    parser.add_argument("--sign-watermarks", action="store_true")
    parser.add_argument("--profile-dir", help="py-spy raw profiles of the service, per step")
    args = parser.parse_args()
    if args.serve:
        return serve(args)
    signer = SigningKey.generate("cost-events")
    rows = []
    with tempfile.TemporaryDirectory(prefix="revocast-cost-") as tmp:
        for engine in args.engines.split(","):
            for rate in (int(r) for r in args.rates.split(",")):
                profile = None
                if args.profile_dir:
                    profile = Path(args.profile_dir) / f"service-{engine}-{rate}.folded"
                row = step(args.bootstrap, engine, rate, args.seconds, Path(tmp), signer,
                           args.sign_watermarks, profile)
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(f"{'engine':<14}{'rate':>6}{'service us/ev':>15}{'bare us/rec':>13}"
          f"{'ratio':>7}{'load':>6}")
    for r in rows:
        print(f"{r['engine']:<14}{r['rate']:>6}{r['svc_cpu_us_per_event']!s:>15}"
              f"{r['bare_cpu_us_per_event']!s:>13}{r.get('ratio')!s:>7}{r['loadavg']:>6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
