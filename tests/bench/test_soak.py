"""The soak's machinery: window figures from samples (pure), and a few seconds for real.

The unit tests feed :func:`bench.soak.summarize` and :func:`bench.soak.resolve` made-up
samples and reports and check the figures they must give (slope, thirds, what is still
pending). The integration test runs the whole soak against the real broker with 2 services
at a low rate for a few windows and checks the shape of what it writes and that nothing
was lost, from the reports and from the services' own admin endpoints; it asserts no speed.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

import pytest

from bench.receipts import Applied
from bench.soak import (
    Acked,
    Sample,
    SoakPlan,
    Windows,
    default_engine,
    listening_ports,
    resolve,
    run_soak,
    summarize,
)
from schemas import Receipt, Watermark

MS = 1_000_000


def _samples(services: dict[str, float], *, count: int, every_s: float) -> list[Sample]:
    """RSS growing by ``services[s]`` MiB per minute from 100 MiB; 0.5 cores each."""
    return [
        Sample(
            t_s=i * every_s,
            rss_mib={s: 100.0 + growth * i * every_s / 60 for s, growth in services.items()},
            cpu_s={s: 0.5 * i * every_s for s in services},
            applied={s: 30.0 * i * every_s for s in services},
            broker_cpu_s=None,
            harness_cpu_s=float(i),
            loadavg_1m=1.0 + i,
        )
        for i in range(count + 1)
    ]


def test_summary_gives_the_rss_slope_after_warm_up_and_the_p99_of_each_third():
    plan = SoakPlan(engine="kafka-python", services=2, rate=30, minutes=1.0, window_s=10.0,
                    warmup_s=20.0)
    samples = _samples({"svc1": 2.0, "svc2": 0.0}, count=plan.windows, every_s=10.0)
    # A jump during warm-up that must not count: svc2 starts 50 MiB lower.
    samples[0].rss_mib["svc2"] = 50.0
    windows = Windows(plan, t0_ns=0)
    for k in range(plan.windows):
        latency = (10 if k < 2 else 40 if k >= 4 else 20) * MS
        for i in range(100):
            event = Acked(uuid.uuid4(), k * 10_000 * MS + i, 0, i, "s", "u", 0.0)
            windows.record(event, latency)
    soak = summarize(plan, samples, windows, ["svc1", "svc2"])

    rss = soak["rss"]["per_service"]
    assert rss["svc1"]["slope_mib_per_min"] == pytest.approx(2.0)
    assert rss["svc2"]["slope_mib_per_min"] == pytest.approx(0.0)
    assert rss["svc2"]["start_mib"] == 50.0
    assert rss["svc2"]["max_minus_min_mib"] == 0.0
    assert rss["svc1"]["samples_after_warmup"] == 5  # t = 20, 30, 40, 50, 60 s
    assert soak["rss"]["max_slope_mib_per_min"] == pytest.approx(2.0)
    assert len(soak["windows"]) == plan.windows
    first = soak["windows"][0]
    assert first["p99_ms"] == pytest.approx(10.0, rel=1e-3)
    assert first["cpu_cores"] == {"svc1": 0.5, "svc2": 0.5}
    assert first["applied_per_s"] == {"svc1": 30.0, "svc2": 30.0}
    latency = soak["latency"]
    assert latency["overall"]["count"] == 600
    assert latency["p99_last_third_over_first"] == pytest.approx(4.0, rel=1e-3)
    assert latency["window_p99_ms"]["min"] == pytest.approx(10.0, rel=1e-3)
    assert latency["window_p99_ms"]["max"] == pytest.approx(40.0, rel=1e-3)
    assert soak["rates"]["applied_per_s"] == {"svc1": 30.0, "svc2": 30.0}
    assert soak["loadavg_1m"]["max"] == 1.0 + plan.windows


def test_resolve_waits_for_every_service_and_takes_the_slowest():
    plan = SoakPlan(engine="kafka-python", minutes=1.0)
    published = time.time_ns()  # report times must be real ones (years 2000-2100)
    windows = Windows(plan, t0_ns=published)
    by_receipts = Acked(uuid.uuid4(), published, 0, 5, "s1", "u1", 0.0)
    by_watermark = Acked(uuid.uuid4(), published, 1, 9, "s2", "u2", 0.0)
    applied = Applied()
    for service, delay in (("svc1", 3), ("svc2", 7)):
        applied.add(Receipt(service=service, instance=f"{service}-i", event_id=by_receipts.event_id,
                            event_type="session.revoked", published_at_ns=published,
                            applied_at_ns=published + delay * MS, partition=0, offset=5))
    # svc1's watermark covers offset 9 of partition 1; svc2's stops just before it.
    for service, next_offset in (("svc1", 10), ("svc2", 9)):
        applied.add(Watermark(service=service, instance=f"{service}-i", topic="t",
                              offsets={1: next_offset}, applied_at_ns=published + 2 * MS,
                              started_at_ns=published - MS, ready=True))

    pending = resolve([by_receipts, by_watermark], applied, ["svc1", "svc2"], windows)

    assert pending == [by_watermark]
    assert windows.overall.count == 1
    assert windows.overall.summary()["max_ms"] == 7.0
    assert by_receipts.event_id not in applied.receipts  # dropped once resolved
    applied.add(Watermark(service="svc2", instance="svc2-i", topic="t", offsets={1: 10},
                          applied_at_ns=published + 4 * MS, started_at_ns=published - MS,
                          ready=True))
    assert resolve(pending, applied, ["svc1", "svc2"], windows) == []
    assert windows.overall.summary()["max_ms"] == 7.0
    assert windows.overall.count == 2


def test_listening_ports_finds_a_socket_this_process_listens_on():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert server.getsockname()[1] in listening_ports(os.getpid())


def test_the_warm_up_is_two_minutes_or_a_fifth_of_a_shorter_soak():
    assert SoakPlan(engine="confluent").warmup == 120.0
    assert SoakPlan(engine="confluent", minutes=2.0).warmup == 24.0
    assert SoakPlan(engine="confluent", minutes=10.0).windows == 60
    assert SoakPlan(engine="confluent").step().planned_events == 180_000


@pytest.mark.integration
def test_a_short_soak_against_the_real_broker_loses_nothing(services, tmp_path, monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", services.kafka_bootstrap)
    engine = default_engine()
    assert engine is not None
    plan = SoakPlan(engine=engine, services=2, rate=20, minutes=0.25, window_s=3.0,
                    warmup_s=6.0)
    code = run_soak(plan, tmp_path)
    doc = json.loads((tmp_path / "results.json").read_text())

    assert doc["errors"] == []
    soak = doc["soak"]
    lost = soak["lost"]
    assert lost["acknowledged"] > 0
    assert lost["lost"] == 0, lost
    assert lost["by_service"] == {"svc1": 0, "svc2": 0}
    assert soak["latency"]["overall"]["count"] == lost["acknowledged"]
    admin = soak["admin"]
    assert admin["ok"], admin
    for service in ("svc1", "svc2"):
        view = admin["services"][service]
        assert view["applied_through_every_acknowledged_offset"]
        assert view["inspected"] > 0
        assert view["revoked"] == view["inspected"]
        assert soak["rates"]["applied_total"][service] > 0
    windows = soak["windows"]
    assert len(windows) == plan.windows
    assert sum(w["published"] for w in windows) == lost["acknowledged"]
    for w in windows:
        assert set(w["rss_mib"]) == {"svc1", "svc2"}
        assert all(v is not None and v > 0 for v in w["rss_mib"].values())
        assert w["p50_ms"] is None or w["p50_ms"] <= w["p99_ms"] <= w["max_ms"]
    assert soak["rss"]["per_service"]["svc1"]["slope_mib_per_min"] is not None
    assert soak["latency"]["p99_last_third_over_first"] is not None
    assert soak["verdicts"]["zero_lost"] is True
    assert doc["environment"]["mode"] == "soak"
    assert (tmp_path / "soak.png").read_bytes()[:4] == b"\x89PNG"
    assert "**lost: 0**" in (tmp_path / "soak.md").read_text()
    assert code == 0
