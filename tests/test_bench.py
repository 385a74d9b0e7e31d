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

from bench import derive, exposure, report
from bench.checkcost import ns_summary
from bench.e2e import parse_e2e_output
from bench.engines import (
    available_engines,
    engine,
    engine_command,
    engine_names,
    settings_engines,
)
from bench.plan import PEERS, RateStep, events_due, full_plan, quick_plan
from bench.profiling import parse_collapsed
from bench.stats import LatencyRecorder, in_force_everywhere, percentile_of_sorted
from bench.tables import Col, num, plain_rows

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


T0 = 1_795_000_000_000_000_000  # an instant of 2026, in ns


def _watermark(service: str, offsets: dict[int, int], at_ns: int):
    from schemas import Watermark

    return Watermark(service=service, instance=f"{service}-1", topic="t.revocast.events",
                     offsets=offsets, applied_at_ns=T0 + at_ns, started_at_ns=T0, ready=True)


def test_watermarks_give_each_event_the_time_of_the_first_one_past_its_offset():
    from bench.receipts import Applied

    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    positions = {a: (0, 4), b: (0, 5), c: (1, 0)}
    applied = Applied()
    applied.add(_watermark("svc1", {0: 5, 1: 0}, 100))  # covers offsets 0..4 of p0: a only
    assert applied.applied_ns("svc1", a, (0, 4)) == T0 + 100
    assert applied.applied_ns("svc1", b, (0, 5)) is None  # the batch edge: not yet
    assert not applied.covers("svc1", positions)
    applied.add(_watermark("svc1", {0: 5, 1: 0}, 150))  # idle repeat: changes nothing
    applied.add(_watermark("svc1", {0: 6, 1: 1}, 200))
    assert applied.applied_ns("svc1", a, (0, 4)) == T0 + 100  # the first covering one counts
    assert applied.applied_ns("svc1", b, (0, 5)) == T0 + 200
    assert applied.applied_ns("svc1", c, (1, 0)) == T0 + 200
    assert applied.covers("svc1", positions)
    assert not applied.covers("svc2", positions)  # another service's marks never count
    latencies = sorted(applied.latencies({a: T0 + 10, b: T0 + 20, c: T0 + 30}, positions,
                                         ["svc1", "svc2"]))
    assert sorted(x[2] for x in latencies) == [90, 170, 180]


def test_per_event_receipts_and_watermarks_join_into_the_earliest_apply():
    from bench.receipts import Applied
    from schemas import Receipt

    e = uuid.uuid4()
    applied = Applied()
    applied.add(Receipt(service="svc1", instance="i", event_id=e, event_type="session.revoked",
                        published_at_ns=T0 + 10, applied_at_ns=T0 + 500, partition=2, offset=7))
    assert applied.applied_ns("svc1", e, (2, 7)) == T0 + 500
    assert applied.covers("svc1", {e: (2, 7)})
    applied.add(_watermark("svc1", {2: 8}, 300))
    assert applied.applied_ns("svc1", e, (2, 7)) == T0 + 300
    assert (applied.reports, applied.watermarks) == (2, 1)


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
    assert full.headline == (8, 1000)
    assert full.bootstrap_sizes == (100_000, 1_000_000)
    assert set(full.poll_periods) == {1.0, 5.0, 30.0}
    assert full.peers == PEERS
    quick = quick_plan()
    assert set(quick.ns) <= set(full.ns)
    assert quick.steps
    assert all(s.duration <= 3.0 for s in quick.steps)
    assert max(quick.bootstrap_sizes) <= 100_000


@pytest.mark.parametrize("make", [quick_plan, full_plan])
def test_every_plan_measures_the_target_configuration_on_every_engine_and_peer(make):
    plan = make(("kafka-python", "faust"))
    measured = {(n, step.label) for n, steps in plan.groups() for step in steps}
    assert (8, "1000") in measured
    assert plan.headline == (8, 1000)
    assert plan.engines == ("kafka-python", "faust")
    assert plan.peers == PEERS  # the peers run the same groups
    if make is quick_plan:
        n, steps = plan.groups()[-1]
        assert n == 8
        assert [s.label for s in steps] == ["1000"]  # a short step, not the whole sweep
        assert steps[0].duration <= 2.0


def test_rate_step_planned_events():
    assert RateStep(1000, 2.5, 10_000).planned_events == 2500
    assert RateStep(1000, 20.0, 10_000).planned_events == 10_000
    assert RateStep(None, 2.0, 7).planned_events == 7
    assert RateStep(None, 2.0, 7).label == "max"


def test_unknown_engine_or_peer_is_refused():
    with pytest.raises(ValueError, match="unknown engine"):
        quick_plan().with_engines(("kafka-python", "nope"), tuple(engine_names()))
    with pytest.raises(ValueError, match="unknown peer"):
        quick_plan().with_peers(("redis-pubsub", "memcached"))
    with pytest.raises(ValueError, match="unknown engine"):
        engine("nope")


# --------------------------------------------------------------------------- engines


def test_engines_are_read_from_the_consumers_package():
    names = engine_names()
    assert names[0] == "kafka-python"  # the reference engine first
    assert {"kafka-python", "faust"} <= set(names)
    engines_dir = Path(__file__).resolve().parent.parent / "consumers" / "engines"
    if (engines_dir / "confluent.py").is_file():
        assert "confluent" in names
    by_name = {e.name: e for e in available_engines()}
    assert by_name["kafka-python"].available
    assert by_name["kafka-python"].bare_client == "kafka-python"
    assert by_name["faust"].bare_client == "aiokafka"
    for e in by_name.values():
        assert e.available or e.reason  # never unavailable without saying why


@pytest.mark.parametrize("name", ["kafka-python", "faust"])
def test_a_service_is_started_through_the_consumers_entry_point(name, tmp_path):
    cmd, env = engine_command(
        engine(name), service="svc1", instance="svc1-x", bootstrap="127.0.0.1:1",
        prefix="t-1", jwks_path=tmp_path / "jwks.json",
        environ={"REDIS_URL": "redis://x", "PATH": "/bin"},
    )
    assert cmd[1] == "-m"
    assert cmd[2].startswith("consumers")
    assert "--service" in cmd
    assert "REDIS_URL" not in env  # services never share state through the harness's Redis
    joined = " ".join(cmd) + " " + " ".join(f"{k}={v}" for k, v in env.items())
    assert "127.0.0.1:1" in joined
    assert str(tmp_path / "jwks.json") in joined
    if name in settings_engines():  # the consumer settings choose the engine, as deployed
        assert env["REVOCAST_ENGINE"] == name
        assert cmd[2] == "consumers.service"


# --------------------------------------------------------------------------- tables


def test_numbers_are_fixed_point_with_one_unit_per_column():
    assert num(4.053e-05) == "0.0000405"
    assert num(31707.0) == "31,707"
    assert num(3.214) == "3.21"
    assert num(12.5) == "12.5"
    assert num(0.353) == "0.353"
    assert num(1528) == "1,528"
    assert num(None) == "-"
    assert num(2.0, 0) == "2"
    for value in (1e-7, 0.5, 7.0, 99.99, 1e9):
        assert "e" not in num(value)


def test_plain_rows_are_never_truncated_and_align_numbers_right():
    cols = [Col("engine"), Col("p99", "ms"), Col("N", numeric=True)]
    rows = [["kafka-python-with-a-very-long-name", num(108.123), "8"],
            ["faust", num(2.5), "16"]]
    lines = plain_rows(cols, rows)
    assert lines[0].split() == ["engine", "p99", "(ms)", "N"]
    assert "kafka-python-with-a-very-long-name" in lines[1]
    assert "108" in lines[1]
    assert "…" not in "".join(lines)
    assert len({len(line) for line in lines[1:]}) == 1  # right-aligned last column
    assert lines[2].endswith("16")


def test_tables_print_plain_rows_when_piped():
    import io

    from rich.console import Console

    from bench.tables import print_table

    out = io.StringIO()
    console = Console(file=out, width=40)  # not a terminal
    print_table(console, "t", [Col("service"), Col("p50", "ms")],
                [["agents-gateway-with-a-long-name", num(31.7)]])
    text = out.getvalue()
    assert "agents-gateway-with-a-long-name" in text
    assert "31.7" in text
    assert "┃" not in text
    assert "│" not in text
    with pytest.raises(ValueError, match="cells"):
        print_table(console, "t", [Col("a")], [["1", "2"]])


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


def _entry(engine: str, n: int, rate: str, p99: float) -> dict:
    return {
        "engine": engine,
        "kind": "revocast",
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
        "kafka-python|N=8|R=1000": _entry("kafka-python", 8, "1000", 5.0),
        "faust|N=8|R=1000": _entry("faust", 8, "1000", 25.0),
        "kafka-python|N=1|R=100": _entry("kafka-python", 1, "100", 3.0),
        "kafka-python|N=1|R=1000": _entry("kafka-python", 1, "1000", 4.0),
    }
    inforce["kafka-python|N=1|R=1000"]["service_cpu_us_per_event"] = 300.0
    # 100 events in 50 batch records: 250 us of the bare client's CPU per event
    inforce["kafka-python|N=1|R=1000"]["bare_client"] = {"client": "kafka-python",
                                                         "records": 50, "cpu_s": 0.025,
                                                         "cpu_us_per_record": 500.0}
    peers = {
        "redis-pubsub|N=8|R=1000": {**_entry("redis-pubsub", 8, "1000", 2.0), "kind": "peer"},
        "redis-streams|N=8|R=1000": {**_entry("redis-streams", 8, "1000", 4.0),
                                     "kind": "peer"},
    }
    check_ns = {"inprocess_p50": 900.0, "redis_p50": 70_000.0, "ratio": 77.8}
    avr = {"apply_rate": 2000.0, "raw_rate": 6000.0, "ratio": 0.3333}
    boot = {"sizes": [{"size": 10, "apply": {"rate_per_s": 2000.0, "elapsed_s": 0.005,
                                             "complete": True},
                       "apply_from_snapshot": {"from_snapshot": True, "complete": True,
                                               "elapsed_s": 0.001},
                       "apply_by_engine": {"confluent": {"rate_per_s": 5000.0}},
                       "raw": {"rate_per_s": 6000.0},
                       "raw_by_client": {"kafka-python": {"rate_per_s": 6000.0},
                                         "aiokafka": {"rate_per_s": 9000.0}}}],
            "batch_records": {"events": 10, "events_per_record": 5, "events_per_s": 4200.0,
                              "apply": {"complete": True, "elapsed_s": 0.002}}}
    cpu = derive.service_cpu_per_event(inforce)
    peers_vs = derive.peer_comparison(inforce, peers)
    ready = derive.bootstrap_ready(boot)
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
        "service_cpu_us_per_event": cpu,
        "apply_rate_per_s": derive.apply_rates(boot),
        "raw_consume_rate_per_s": derive.raw_consume_rates(boot),
        "bootstrap_ready_s": ready,
        "bootstrap": boot,
        "peers": {"entries": peers, "revocast_p99_over_peer_p99": peers_vs},
        "from_idp_ms": {"error": "not measured"},
        "exposure": {"models": [{"label": "x", "kind": "computed", "p50_s": 1.0,
                                 "p99_s": 2.0, "max_s": 3.0, "request_cost_ns": 0.0},
                                {"label": "y", "kind": "measured", "p50_s": 0.001,
                                 "p99_s": 0.002, "max_s": 0.003, "request_cost_ns": 900.0}]},
    }
    doc["targets"] = report.evaluate_targets(
        inforce, check_ns, avr, (8, 1000), e2e=doc["raw_kafka_e2e_ms"], cpu=cpu,
        peers_vs=peers_vs, ready=ready, apply_rates=doc["apply_rate_per_s"])
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


def test_targets_are_evaluated_per_engine_and_never_raise():
    targets = _results()["targets"]
    by_engine = targets["in_force_p99_ms"]["by_engine"]
    assert targets["in_force_p99_ms"]["limit"] == 6.0  # 2 x Kafka's own p99 in the run
    assert by_engine["kafka-python"]["met"] is True  # 5 ms
    assert by_engine["faust"]["met"] is False  # 25 ms
    assert targets["in_force_p99_ms"]["matches_target_config"] is True
    assert targets["check_ratio"]["met"] is True
    assert targets["apply_vs_raw"]["met"] is False
    cpu = targets["service_cpu"]["by_engine"]["kafka-python"]
    assert (cpu["service_us"], cpu["bare_client_us"], cpu["met"]) == (300.0, 250.0, True)
    vs = targets["vs_pubsub"]["by_engine"]
    assert vs["kafka-python"] == {"config": "N=8 R=1000", "ratio": 2.5, "met": False}
    assert vs["faust"]["ratio"] == 12.5
    assert targets["batch_vs_raw"]["measured"] == 0.7  # 4,200 events/s over 6,000 records/s
    assert targets["batch_vs_raw"]["met"] is True
    assert targets["bootstrap_cold_s"]["measured"] is None  # no 1M replay in this document
    assert targets["bootstrap_cold_s"]["met"] is False


def test_the_target_falls_back_to_10_ms_without_a_kafka_floor():
    doc = _results()
    targets = report.evaluate_targets(doc["in_force_everywhere"], doc["check_ns"],
                                      doc["apply_vs_raw"], (8, 1000))
    assert targets["in_force_p99_ms"]["limit"] == 10.0


def test_derived_blocks_pair_each_service_cost_with_its_bare_client():
    doc = _results()
    cpu = doc["service_cpu_us_per_event"]["kafka-python"]
    assert cpu["bare_client"] == "kafka-python"
    assert cpu["configs"]["N=1 R=1000"]["service_over_bare"] == 1.2
    assert cpu["configs"]["N=1 R=1000"]["bare_client_us_per_record"] == 500.0
    assert "bare_client_us" not in cpu["configs"]["N=8 R=1000"]  # no bare client beside N=8
    assert doc["raw_consume_rate_per_s"]["aiokafka"] == 9000.0
    assert doc["bootstrap_ready_s"]["cold"] == {"10": 0.005}
    assert doc["bootstrap_ready_s"]["snapshot"] == {"10": 0.001}
    assert doc["apply_rate_per_s"]["single_records"]["10"]["confluent"] == 5000.0
    assert doc["apply_rate_per_s"]["batch_records"] == {
        "10": {"kafka-python": 4200.0, "events_per_record": 5, "complete": True}}
    assert doc["apply_rate_per_s"]["single_records"]["10"]["kafka-python"] == 2000.0
    pairs = doc["peers"]["revocast_p99_over_peer_p99"]["N=8 R=1000"]
    assert pairs["kafka-python / redis-pubsub"]["ratio"] == 2.5
    assert pairs["kafka-python / redis-streams"]["ratio"] == 1.25
    assert "N=1 R=100" not in doc["peers"]["revocast_p99_over_peer_p99"]  # peers not run


def test_findings_explain_a_missed_target_with_measured_figures():
    findings = _results()["findings"]
    faust = next(f for f in findings if f.startswith("faust:"))
    assert "misses the target of 6.0 ms" in faust
    assert "cores" in faust


def test_markdown_has_every_section(tmp_path: Path):
    text = report.render_markdown(_results())
    for heading in ("## Targets", "## In force everywhere", "## Per-check cost",
                    "## Kafka's own end-to-end latency", "## Exposure window",
                    "## Bootstrap", "## Findings", "## Peers", "## Service CPU per event",
                    "## From the identity provider"):
        assert heading in text
    assert "| kafka-python | 8 | 1000 |" in text
    assert "| redis-pubsub | 8 | 1000 |" in text


def test_plots_are_written(tmp_path: Path):
    from bench import plots

    doc = _results()
    made = plots.plot_all(
        tmp_path,
        entries=[*doc["in_force_everywhere"].values(), *doc["peers"]["entries"].values()],
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
    """One kafka-python service and one pub/sub peer, 100 events: every event gets its
    receipt, every peer applies every event, the bare client counts, results validate."""
    from dataclasses import replace

    from bench.runner import run_benchmark

    for name, value in services.env().items():
        monkeypatch.setenv(name, value)
    plan = replace(
        quick_plan(),
        engines=("kafka-python",),
        ns=(1,),
        steps=(RateStep(100, 1.0, 100),),
        headline=(1, 100),
        check_iterations=2_000,
        redis_iterations=100,
        check_state_size=1_000,
        jwt_tokens=2_000,
        headline_step=None,
        peers=("redis-pubsub",),
    )
    code = run_benchmark(plan, tmp_path, skip=frozenset({"e2e", "bootstrap", "poll"}))
    doc = json.loads((tmp_path / "results.json").read_text())
    entry = doc["in_force_everywhere"]["kafka-python|N=1|R=100"]
    assert entry["events"] == 100
    assert entry["incomplete_events"] == 0, entry
    assert entry["per_service"]["svc1"]["count"] == 100
    assert entry["service_cpu_us_per_event"] > 0
    bare = entry["bare_client"]
    assert bare["client"] == "kafka-python"
    assert 0 < bare["records"] <= 100  # the step's records, never the probes or the warm-up
    peer = doc["peers"]["entries"]["redis-pubsub|N=1|R=100"]
    assert (peer["events"], peer["incomplete_events"]) == (100, 0), peer
    assert doc["peers"]["revocast_p99_over_peer_p99"]["N=1 R=100"]
    cpu = doc["service_cpu_us_per_event"]["kafka-python"]["configs"]["N=1 R=100"]
    assert cpu["bare_client_us"] is not None
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


def _make_topic(bootstrap: str, partitions: int, records: int) -> str:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"t-bare-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()
    if records:
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        for i in range(records):
            producer.send(topic, key=str(i).encode(), value=b"x" * 100)
        producer.flush(30)
        producer.close()
    return topic


def _installed_bare_clients() -> list[str]:
    return sorted({e.bare_client for e in available_engines() if e.available})


@pytest.mark.integration
@pytest.mark.parametrize("client", _installed_bare_clients())
def test_bare_client_replays_every_record_of_every_partition(services, client):
    import subprocess
    import sys

    topic = _make_topic(services.kafka_bootstrap, 3, 60)
    done = subprocess.run(
        [sys.executable, "-m", "bench.bareclient", "--client", client, "--replay",
         "--bootstrap", services.kafka_bootstrap, "--topic", topic, "--timeout", "60"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["records"], result["expected"], result["complete"]) == (60, 60, True)
    assert result["payload_bytes"] == 6000
    assert result["cpu_s"] > 0


@pytest.mark.integration
def test_bare_client_live_counts_new_records_and_reports_its_cpu(services, tmp_path):
    import subprocess
    import sys
    import time

    from kafka import KafkaProducer

    topic = _make_topic(services.kafka_bootstrap, 3, 5)  # old records: not counted
    status = tmp_path / "status.json"
    log = tmp_path / "bare.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bareclient", "--client", "kafka-python",
             "--bootstrap", services.kafka_bootstrap, "--topic", topic, "--live", str(status)],
            stdout=sink, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not status.is_file():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "bare client never wrote its status"
            time.sleep(0.1)
        producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap)
        for i in range(40):
            producer.send(topic, key=str(i).encode(), value=b"y" * 10)
        producer.flush(30)
        producer.close()
        seen = {}
        while time.monotonic() < deadline:
            seen = json.loads(status.read_text())
            if seen["records"] >= 40:
                break
            time.sleep(0.1)
        assert seen["records"] == 40
        assert seen["cpu_s"] > 0
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0


class _SilentUI:
    class _Task:
        def update(self, completed: float) -> None: ...
        def reset(self, description: str, total: float | None) -> None: ...
        def done(self) -> None: ...

    def task(self, description: str, total: float | None) -> _Task:
        return self._Task()


@pytest.mark.integration
@pytest.mark.parametrize("peer", PEERS)
def test_redis_peers_apply_every_event_in_every_service(services, tmp_path, peer):
    from dataclasses import replace

    from bench.peers import run_peer_sweep
    from bench.processes import Children
    from bench.sweep import SweepContext
    from schemas import SigningKey

    plan = replace(quick_plan(), ns=(3,), steps=(RateStep(200, 0.5, 100),),
                   headline=(3, 200), headline_step=None, drain_timeout=60.0,
                   warmup=RateStep(100, 0.2, 20))
    results = []
    (tmp_path / "logs").mkdir()
    with Children() as children:
        ctx = SweepContext(
            bootstrap=services.kafka_bootstrap, plan=plan, run_id=uuid.uuid4().hex[:6],
            signer=SigningKey.generate("t"), jwks_path=tmp_path / "unused.json",
            out_dir=tmp_path, children=children, broker_pid=None, ui=_SilentUI(),
            redis_url=services.redis_url,
        )
        run_peer_sweep(ctx, peer, results.append)
    assert len(results) == 1  # the warm-up is not recorded
    entry = results[0].entry
    assert (entry["engine"], entry["n"], entry["kind"]) == (peer, 3, "peer")
    assert entry["events"] == 100
    assert entry["incomplete_events"] == 0, entry
    assert entry["drain"] == "complete"
    assert {s: v["count"] for s, v in entry["per_service"].items()} == {
        "svc1": 100, "svc2": 100, "svc3": 100}
    assert entry["p50_ms"] <= entry["p99_ms"] <= entry["max_ms"]


@pytest.mark.integration
def test_idp_requests_are_timed_to_in_force_in_every_service(services, tmp_path):
    """SCIM deactivations and SSF session-revoked SETs through serve-api's app: each request
    publishes one event, every service applies every one of them."""
    from dataclasses import replace

    from bench.from_idp import run_from_idp
    from bench.processes import Children
    from bench.sweep import SweepContext
    from schemas import KeySet, SigningKey

    signer = SigningKey.generate("t-idp")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(KeySet.of([signer]).to_jwks()))
    (tmp_path / "logs").mkdir()
    plan = replace(quick_plan(), warmup=None, drain_timeout=60.0, stall_timeout=30.0)
    with Children() as children:
        ctx = SweepContext(
            bootstrap=services.kafka_bootstrap, plan=plan, run_id=uuid.uuid4().hex[:6],
            signer=signer, jwks_path=jwks, out_dir=tmp_path, children=children,
            broker_pid=None, ui=_SilentUI(), redis_url=services.redis_url,
        )
        result = run_from_idp(ctx, n=2, count=4, rate=20.0)
    assert result["drain"] == "complete", result
    for label in ("scim", "ssf_push"):
        block = result[label]
        assert (block["requests"], block["events"], block["incomplete_events"]) == (4, 4, 0)
        answer = block["request_to_answer"]
        everywhere = block["request_to_in_force_everywhere"]
        assert answer["count"] == everywhere["count"] == 4
        assert 0 < everywhere["min_ms"] <= everywhere["p50_ms"] <= everywhere["max_ms"]


@pytest.mark.integration
def test_the_cpu_of_a_loopback_server_the_harness_did_not_start_is_found(services):
    from urllib.parse import urlsplit

    from bench.processes import cpu_seconds, listening_pid

    url = urlsplit(services.redis_url)
    if url.hostname not in ("127.0.0.1", "localhost"):
        pytest.fail(f"this test needs Redis on loopback, not {url.hostname}")
    pid = listening_pid(f"{url.hostname}:{url.port}")
    assert pid is not None
    assert cpu_seconds(pid) is not None
    assert listening_pid("10.1.2.3:9092") is None  # not this host: never guessed
    assert listening_pid("127.0.0.1:1") is None  # nothing listens there


@pytest.mark.integration
def test_poller_detects_every_revocation(services):
    from bench.poller import measure_polling

    result = measure_polling(services.redis_url, [0.2, 0.5], window=1.0, revocations=5, seed=1)
    assert result["revocations"] == 5
    for block in result["periods"].values():
        assert len(block["latencies_ns"]) == 5
        assert all(latency > 0 for latency in block["latencies_ns"])
