"""The benchmark harness's pure parts, plus two small runs against the real broker.

Unit tests make no wall-clock assertions: statistics, the JWT exposure
simulation, parsing of Kafka's tool output and of profiles, the shape of
results.json. The integration tests run the real thing (tiny) and assert what
must hold whatever the machine's speed: every published event got a receipt
from every service, the results document is well-formed.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from bench import exposure, report
from bench.checkcost import ns_summary
from bench.e2e import parse_e2e_output
from bench.plan import FLAVORS, RateStep, events_due, full_plan, quick_plan
from bench.profiling import parse_collapsed
from bench.stats import LatencyRecorder, in_force_everywhere, percentile_of_sorted

MS = 1_000_000


# --------------------------------------------------------------------------- stats


def test_recorder_percentiles_are_within_hdr_precision():
    rec = LatencyRecorder()
    values = [i * 10_000 for i in range(1, 10_001)]  # 10 us .. 100 ms, uniform
    rec.record_many_ns(values)
    summary = rec.summary()
    assert summary["count"] == 10_000
    ordered = sorted(v / MS for v in values)
    for key, p in (("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99)):
        exact = percentile_of_sorted(ordered, p)
        assert summary[key] == pytest.approx(exact, rel=2e-3)
    assert summary["max_ms"] == 100.0  # exact, not HdrHistogram's bucket edge
    assert summary["min_ms"] == 0.01
    assert summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]


def test_recorder_percentile_never_exceeds_exact_max():
    rec = LatencyRecorder()
    rec.record_ns(999_999_999)  # HdrHistogram rounds this bucket up
    assert rec.summary()["p99_ms"] <= rec.summary()["max_ms"] == pytest.approx(999.999999)


def test_recorder_clamps_and_counts_negative_latencies():
    rec = LatencyRecorder()
    rec.record_ns(-5_000)
    rec.record_ns(2 * MS)
    summary = rec.summary()
    assert summary["count"] == 2
    assert summary["clamped"] == {"below_1us": 1, "above_1h": 0}
    assert summary["min_ms"] == -0.005


def test_empty_recorder_summary_has_no_numbers():
    summary = LatencyRecorder().summary()
    assert summary["count"] == 0
    assert summary["p50_ms"] is None
    assert summary["max_ms"] is None


def test_recorder_histogram_round_trips_through_its_encoding():
    rec = LatencyRecorder()
    rec.record_many_ns([1 * MS, 2 * MS, 3 * MS])
    hist = LatencyRecorder.decode_histogram(rec.encoded())
    assert hist.get_total_count() == 3
    xs, ys = rec.cdf_ms()
    assert ys[-1] == 1.0
    assert xs == sorted(xs)


def test_in_force_everywhere_is_the_max_over_services():
    a, b = uuid.uuid4(), uuid.uuid4()
    published = {a: 0, b: 0}
    receipts = [
        (a, "svc1", 2 * MS),
        (a, "svc2", 7 * MS),
        (b, "svc1", 1 * MS),
        (b, "svc2", 3 * MS),
    ]
    result = in_force_everywhere(published, receipts, ["svc1", "svc2"], keep_raw=True)
    assert result.complete == 2
    assert result.incomplete == 0
    assert sorted(result.everywhere_ns) == [3 * MS, 7 * MS]
    assert result.everywhere.summary()["max_ms"] == 7.0
    assert result.per_service["svc2"].count == 2


def test_an_event_missing_from_one_service_is_incomplete_not_dropped():
    a, b = uuid.uuid4(), uuid.uuid4()
    receipts = [(a, "svc1", MS), (a, "svc2", MS), (b, "svc1", MS)]
    result = in_force_everywhere({a: 0, b: 0}, receipts, ["svc1", "svc2"])
    assert (result.complete, result.incomplete, result.missing_receipts) == (1, 1, 1)
    assert result.everywhere.count == 1


def test_receipts_for_other_events_services_and_duplicates_are_ignored():
    a = uuid.uuid4()
    receipts = [
        (uuid.uuid4(), "svc1", 99 * MS),  # not published in this step
        (a, "intruder", 50 * MS),  # not an expected service
        (a, "svc1", 1 * MS),
        (a, "svc1", 40 * MS),  # duplicate: the first one counts
    ]
    result = in_force_everywhere({a: 0}, receipts, ["svc1"])
    assert result.unexpected_receipts == 1
    assert result.everywhere.summary()["max_ms"] == 1.0


def test_ns_summary_is_nearest_rank():
    summary = ns_summary([float(v) for v in range(1, 101)])
    assert (summary["p50"], summary["p99"], summary["max"]) == (50.0, 99.0, 100.0)


# --------------------------------------------------------------------------- plan and pacing


def test_events_due_is_a_bounded_staircase():
    assert events_due(0.0, 1000, 50) == 1
    assert events_due(-1.0, 1000, 50) == 0
    assert events_due(0.0099, 1000, 50) == 10
    assert events_due(10.0, 1000, 50) == 50
    counts = [events_due(t / 100, 250, 10_000) for t in range(0, 500)]
    assert counts == sorted(counts)
    with pytest.raises(ValueError, match="rate"):
        events_due(1.0, 0, 10)


def test_plans_cover_the_required_sweep():
    full = full_plan()
    assert full.ns == (1, 2, 4, 8)
    assert [s.label for s in full.steps] == ["100", "1000", "5000", "max"]
    assert full.flavors == FLAVORS
    assert full.headline == (8, 1000)
    assert full.bootstrap_sizes == (100_000, 1_000_000)
    assert set(full.poll_periods) == {1.0, 5.0, 30.0}
    quick = quick_plan()
    assert set(quick.ns) <= set(full.ns)
    assert quick.steps
    assert all(s.duration <= 3.0 for s in quick.steps)
    assert max(quick.bootstrap_sizes) <= 100_000


def test_rate_step_planned_events():
    assert RateStep(1000, 2.5, 10_000).planned_events == 2500
    assert RateStep(1000, 20.0, 10_000).planned_events == 10_000
    assert RateStep(None, 2.0, 7).planned_events == 7
    assert RateStep(None, 2.0, 7).label == "max"


def test_unknown_flavor_is_refused():
    with pytest.raises(ValueError, match="unknown flavor"):
        quick_plan().with_flavors(("kafka-python", "nope"))


# --------------------------------------------------------------------------- exposure


@pytest.mark.parametrize("ttl_min", [5, 15, 60])
def test_jwt_window_is_the_remaining_lifetime(ttl_min):
    ttl = ttl_min * 60.0
    windows = exposure.simulate_jwt_exposure([ttl], 50_000, seed=7)
    assert windows.size == 50_000
    assert np.all(windows > 0)
    assert np.all(windows <= ttl)
    # Steady state: uniform on (0, TTL]. Mean TTL/2, median TTL/2 (loose statistical bounds).
    assert windows.mean() == pytest.approx(ttl / 2, rel=0.02)
    assert np.median(windows) == pytest.approx(ttl / 2, rel=0.03)


def test_jwt_mixture_is_bounded_by_the_longest_ttl_and_deterministic():
    ttls = [300.0, 900.0, 3600.0]
    first = exposure.simulate_jwt_exposure(ttls, 20_000, seed=3)
    again = exposure.simulate_jwt_exposure(ttls, 20_000, seed=3)
    assert np.array_equal(first, again)
    assert first.max() <= 3600.0
    # Longer-lived tokens are more likely to be valid at a random instant: the mix's mean
    # is the TTL-weighted mean of TTL/2, i.e. sum(T^2) / (2 sum(T)).
    expected = sum(t * t for t in ttls) / (2 * sum(ttls))
    assert first.mean() == pytest.approx(expected, rel=0.03)


def test_jwt_simulation_rejects_nonsense():
    with pytest.raises(ValueError, match="positive"):
        exposure.simulate_jwt_exposure([0.0], 10)
    with pytest.raises(ValueError, match="tokens"):
        exposure.simulate_jwt_exposure([60.0], 0)


def test_summarize_seconds_orders_its_percentiles():
    summary = exposure.summarize_seconds(np.linspace(0.001, 10.0, 1001))
    assert summary["min_s"] <= summary["p50_s"] <= summary["p99_s"] <= summary["max_s"]
    assert exposure.summarize_seconds([])["count"] == 0


# --------------------------------------------------------------------------- tool output


E2E_SAMPLE = """Topic "x" does not exist. Will create topic with 1 partition(s)
0\t188.01494200000002
1000\t1.6467
Avg latency: 2.7835 ms
Percentiles: 50th = 1, 99th = 14, 99.9th = 25
"""


def test_parse_end_to_end_latency_output():
    assert parse_e2e_output(E2E_SAMPLE) == {"avg": 2.7835, "p50": 1.0, "p99": 14.0, "p999": 25.0}
    with pytest.raises(ValueError, match="Percentiles"):
        parse_e2e_output("Exception in thread main")


def test_parse_py_spy_collapsed_stacks():
    lines = [
        "main (a.py:1);loop (a.py:5);verify (s.py:9) 6",
        "main (a.py:1);loop (a.py:7);crc (k.py:3) 3",
        "main (a.py:1);idle (a.py:9) 1",
        "garbage",
    ]
    summary = parse_collapsed(lines)
    assert summary["samples"] == 10
    inclusive = {i["function"]: i["share"] for i in summary["inclusive"]}
    assert inclusive["main (a.py)"] == 1.0
    assert inclusive["loop (a.py)"] == 0.9  # line numbers folded: one function
    assert summary["self"][0] == {"function": "verify (s.py)", "share": 0.6}


def test_parse_py_spy_threads_separates_blocked_from_busy_time():
    lines = [
        "thread (0x1a): revocast-consumer-svc3/svc3-kafka-python;run (t.py:1);verify (s.py:2) 7",
        "thread (0x1a): revocast-consumer-svc3/svc3-kafka-python;run (t.py:1);"
        "Condition.wait (threading.py:3) 3",
        "thread (0x2b): MainThread;main (m.py:1);Event.wait (threading.py:4) 10",
    ]
    summary = parse_collapsed(lines)
    assert summary["samples"] == 20
    assert summary["busy_samples"] == 7
    consumer = summary["threads"]["revocast-consumer"]  # instance-free thread name
    assert consumer["busy_share"] == 0.7
    assert consumer["top"][0] == {"function": "verify (s.py)", "share": 0.7}
    assert summary["threads"]["MainThread"]["busy_share"] == 0.0
    assert summary["self"] == [{"function": "verify (s.py)", "share": 1.0}]


# --------------------------------------------------------------------------- results


def _entry(flavor: str, n: int, rate: str, p99: float) -> dict:
    return {
        "flavor": flavor,
        "n": n,
        "rate": rate,
        "p50_ms": p99 / 4,
        "p99_ms": p99,
        "max_ms": p99 * 2,
        "events": 100,
        "achieved_rate": 99.5,
        "incomplete_events": 0,
        "drain": "complete",
        "max_lag_ms": 1.0,
        "per_service": {f"svc{i}": {"p50_ms": 1.0, "p99_ms": 2.0} for i in range(1, n + 1)},
        "in_force_everywhere": {"p50_ms": p99 / 4, "p99_ms": p99, "max_ms": p99 * 2},
        "cpu": {"services_cores": 1.2, "broker_cores": 0.3, "harness_cores": 0.2,
                "total_cores": 1.7},
    }


def _results() -> dict:
    inforce = {
        "kafka-python|N=8|R=1000": _entry("kafka-python", 8, "1000", 8.0),
        "faust|N=8|R=1000": _entry("faust", 8, "1000", 25.0),
        "kafka-python|N=1|R=100": _entry("kafka-python", 1, "100", 3.0),
    }
    check_ns = {"inprocess_p50": 900.0, "redis_p50": 70_000.0, "ratio": 77.8}
    avr = {"apply_rate": 2000.0, "raw_rate": 6000.0, "ratio": 0.3333}
    doc = {
        "schema": report.SCHEMA,
        "mode": "full",
        "environment": {"date": "2026-11-28T00:00:00+00:00", "cores": 2, "python": "3.11",
                        "kafka_version": "4.3.1"},
        "settings": full_plan().to_dict(),
        "in_force_everywhere": inforce,
        "check_ns": check_ns,
        "raw_kafka_e2e_ms": {"p50": 1.0, "p99": 3.0},
        "apply_vs_raw": avr,
        "bootstrap": {"sizes": [{"size": 10, "apply": {"rate_per_s": 2000.0},
                                 "raw": {"rate_per_s": 6000.0},
                                 "raw_no_crc": {"rate_per_s": 20000.0}}]},
        "exposure": {"models": [{"label": "x", "kind": "computed", "p50_s": 1.0,
                                 "p99_s": 2.0, "max_s": 3.0}]},
    }
    doc["targets"] = report.evaluate_targets(inforce, check_ns, avr, (8, 1000))
    doc["findings"] = report.findings(doc, (8, 1000))
    return doc


def test_a_complete_results_document_validates():
    doc = _results()
    assert report.validate_results(doc) == []
    json.dumps(doc)  # serialisable as is


def test_validation_names_what_is_missing_or_inconsistent():
    doc = _results()
    del doc["check_ns"]["redis_p50"]
    doc["in_force_everywhere"]["faust|N=8|R=1000"]["p99_ms"] = 1e9  # above its max
    del doc["raw_kafka_e2e_ms"]
    problems = report.validate_results(doc)
    assert "check_ns lacks 'redis_p50'" in problems
    assert "missing top-level key 'raw_kafka_e2e_ms'" in problems
    assert any("p50 <= p99 <= max" in p for p in problems)


def test_targets_are_evaluated_per_flavor_and_never_raise():
    targets = _results()["targets"]
    by_flavor = targets["in_force_p99_ms"]["by_flavor"]
    assert by_flavor["kafka-python"]["met"] is True
    assert by_flavor["faust"]["met"] is False
    assert targets["in_force_p99_ms"]["matches_target_config"] is True
    assert targets["check_ratio"]["met"] is True
    assert targets["apply_vs_raw"]["met"] is False


def test_findings_explain_a_missed_target_with_measured_figures():
    findings = _results()["findings"]
    faust = next(f for f in findings if f.startswith("faust:"))
    assert "misses the 10 ms target" in faust
    assert "cores" in faust
    assert any("CRC32C" in f for f in findings)


def test_markdown_has_every_section(tmp_path: Path):
    text = report.render_markdown(_results())
    for heading in ("## Targets", "## In force everywhere", "## Per-check cost",
                    "## Kafka's own end-to-end latency", "## Exposure window",
                    "## Bootstrap", "## Findings"):
        assert heading in text
    assert "| kafka-python | 8 | 1000 |" in text


def test_plots_are_written(tmp_path: Path):
    from bench import plots

    doc = _results()
    made = plots.plot_all(
        tmp_path,
        entries=list(doc["in_force_everywhere"].values()),
        headline_raw={"kafka-python": {"everywhere": [MS, 2 * MS, 9 * MS],
                                       "per_service": {"svc1": [MS, 2 * MS], "svc2": [9 * MS]}}},
        headline=(8, 1000),
        exposure_models=doc["exposure"]["models"],
    )
    assert set(made) == {"cdf_per_service.png", "p99_vs_rate.png", "p99_vs_n.png",
                         "exposure_windows.png"}
    for name in made:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------- integration


@pytest.mark.integration
def test_tiny_benchmark_run_against_the_real_broker(services, tmp_path, monkeypatch):
    """One kafka-python service, 100 events: every event gets its receipt, results validate."""
    from dataclasses import replace

    from bench.runner import run_benchmark

    for name, value in services.env().items():
        monkeypatch.setenv(name, value)
    plan = replace(
        quick_plan(),
        flavors=("kafka-python",),
        ns=(1,),
        steps=(RateStep(100, 1.0, 100),),
        headline=(1, 100),
        check_iterations=2_000,
        redis_iterations=100,
        check_state_size=1_000,
        jwt_tokens=2_000,
        time_budget=None,
    )
    code = run_benchmark(plan, tmp_path, skip=frozenset({"e2e", "bootstrap", "poll"}))
    doc = json.loads((tmp_path / "results.json").read_text())
    entry = doc["in_force_everywhere"]["kafka-python|N=1|R=100"]
    assert entry["events"] == 100
    assert entry["incomplete_events"] == 0, entry
    assert entry["per_service"]["svc1"]["count"] == 100
    assert doc["check_ns"]["inprocess_p50"] > 0
    # The only problems allowed are the parts skipped on purpose.
    assert [p for p in report.validate_results(doc) if "raw_kafka_e2e_ms" not in p] == []
    assert code == 0
    assert (tmp_path / "results.md").is_file()


@pytest.mark.integration
def test_kafka_end_to_end_latency_tool_runs_against_the_broker(services, tmp_path):
    from bench.e2e import run_end_to_end_latency
    from devstack import ensure_kafka_jars

    result = run_end_to_end_latency(
        ensure_kafka_jars(), services.kafka_bootstrap, f"t-e2e-{uuid.uuid4().hex[:8]}",
        records=200, record_size=256, log_path=tmp_path / "e2e.log",
    )
    assert result["records"] == 200
    assert 0 <= result["p50"] <= result["p99"] <= result["p999"]


@pytest.mark.integration
def test_poller_detects_every_revocation(services):
    from bench.poller import measure_polling

    result = measure_polling(services.redis_url, [0.2, 0.5], window=1.0, revocations=5, seed=1)
    assert result["revocations"] == 5
    for block in result["periods"].values():
        assert len(block["latencies_ns"]) == 5
        assert all(latency > 0 for latency in block["latencies_ns"])
