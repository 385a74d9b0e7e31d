"""Small parts: freshness guard, errors, metrics, logs, settings, snapshots, dedupe."""

from __future__ import annotations

import base64
import json
import logging
import math
import uuid

import pytest
from prometheus_client import CollectorRegistry

from consumers import (
    ConsumerMetrics,
    ConsumerSettings,
    ConsumerSnapshot,
    FreshnessGuard,
    InvalidTokenError,
    MissingTokenError,
    SnapshotError,
    StaleViewError,
)
from consumers.consumer import EventIdSet
from consumers.exceptions import claims_challenge
from consumers.metrics import JsonFormatter, log_extra
from consumers.testing import AlwaysFresh
from schemas import TopicNames

# ------------------------------------------------------------------ freshness


def test_guard_denies_until_ready_and_every_partition_is_fresh() -> None:
    guard = FreshnessGuard(max_staleness=5.0)
    assert "not started" in (guard.denial() or "")
    guard.set_partitions([2, 0, 1, 1])
    assert guard.partitions == (0, 1, 2)
    guard.set_not_ready("replaying: 10 retained records to go")
    assert guard.denial() == "revocation view not ready: replaying: 10 retained records to go"
    guard.mark_ready()
    assert guard.denial(now=100.0) == "partition 0: no heartbeat or event seen yet"
    for p in (0, 1, 2):
        guard.observe(p, published_at=100.0, received_at=100.001)
    assert guard.denial(now=104.0) is None
    guard.observe(1, published_at=90.0)  # an older record never makes it look fresher/staler
    assert guard.staleness(1, now=104.0) == pytest.approx(4.0)
    assert guard.denial(now=106.0) == (
        "partition 0: newest heartbeat/event was published 6.0s ago (max 5s)"
    )
    report = guard.report(now=106.0)
    assert not report.fresh
    assert report.ready
    assert report.staleness == pytest.approx(6.0)
    assert report.partitions[0].last_received_at == pytest.approx(100.001)
    as_dict = report.to_dict()
    json.dumps(as_dict)
    assert as_dict["fresh"] is False


def test_guard_report_is_json_safe_with_unseen_partitions() -> None:
    guard = FreshnessGuard()
    guard.set_partitions([0])
    report = guard.report()
    assert math.isinf(report.partitions[0].staleness)
    assert report.to_dict()["partitions"][0]["staleness"] is None
    with pytest.raises(ValueError, match="positive"):
        FreshnessGuard(max_staleness=0)


def test_always_fresh_for_unit_tests() -> None:
    assert AlwaysFresh().denial() is None


# --------------------------------------------------------------------- errors


def test_www_authenticate_values() -> None:
    assert MissingTokenError("none").www_authenticate() == "Bearer"
    assert MissingTokenError("none").www_authenticate(realm="api") == 'Bearer realm="api"'
    exc = InvalidTokenError('bad "quoted"\\ value\n', reason="malformed")
    value = exc.www_authenticate()
    assert value == "Bearer error=\"invalid_token\", error_description=\"bad 'quoted'' value'\""
    assert exc.reason == "malformed"
    assert exc.status == 401
    assert StaleViewError("stale").status == 503


def test_claims_challenge_is_entra_shaped() -> None:
    decoded = json.loads(base64.b64decode(claims_challenge(1604106650.2)))
    assert decoded == {"access_token": {"nbf": {"essential": True, "value": "1604106651"}}}


# -------------------------------------------------------------- metrics, logs


def test_metrics_are_per_registry_and_per_instance() -> None:
    registry = CollectorRegistry()
    a = ConsumerMetrics("svc", "a", registry=registry)
    b = ConsumerMetrics("svc", "b", registry=registry)  # same registry: families shared
    a.applied("token.revoked", 0.0004)
    a.applied("token.revoked", None)
    b.applied("token.revoked", 0.2)
    a.dead_lettered("bad_signature")
    a.set_lag(0, 7)
    a.track_staleness([0], lambda p: 1.5)
    a.set_ready(True)
    labels = {"service": "svc", "instance": "a", "flavor": "kafka-python"}
    assert (
        registry.get_sample_value(
            "revocast_consumer_events_applied_total", {**labels, "type": "token.revoked"}
        )
        == 2
    )
    assert (
        registry.get_sample_value(
            "revocast_consumer_apply_latency_seconds_bucket", {**labels, "le": "0.0005"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "revocast_consumer_apply_latency_seconds_bucket", {**labels, "le": "0.0001"}
        )
        == 0
    )
    assert (
        registry.get_sample_value(
            "revocast_consumer_dead_lettered_total", {**labels, "reason": "bad_signature"}
        )
        == 1
    )
    assert (
        registry.get_sample_value("revocast_consumer_partition_lag", {**labels, "partition": "0"})
        == 7
    )
    assert (
        registry.get_sample_value(
            "revocast_consumer_partition_staleness_seconds", {**labels, "partition": "0"}
        )
        == 1.5
    )
    assert registry.get_sample_value("revocast_consumer_ready", labels) == 1
    ConsumerMetrics("svc", "c", registry=CollectorRegistry())  # another registry: no clash


def test_json_logs_carry_fields(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("revocast.test")
    with caplog.at_level(logging.INFO, logger="revocast.test"):
        logger.info("applied %s", "x", extra=log_extra(service="s", rule="session_revoked"))
    line = JsonFormatter().format(caplog.records[0])
    body = json.loads(line)
    assert body["msg"] == "applied x"
    assert body["service"] == "s"
    assert body["rule"] == "session_revoked"
    assert body["level"] == "INFO"


# ------------------------------------------------------------------- settings


def test_settings_from_env_with_shared_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVOCAST_SERVICE", "orders")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    monkeypatch.setenv("REDIS_URL", "redis://:pw@127.0.0.1:6390/0")
    monkeypatch.setenv("REVOCAST_MAX_STALENESS", "2.5")
    monkeypatch.setenv("REVOCAST_TOPIC_PREFIX", "t-1")
    monkeypatch.setenv("REVOCAST_REQUIRE_SIGNATURE", "false")
    settings = ConsumerSettings()  # type: ignore[call-arg]  # service comes from the env
    assert settings.service == "orders"
    assert settings.kafka_bootstrap_servers == "127.0.0.1:19092"
    assert settings.redis_url == "redis://:pw@127.0.0.1:6390/0"
    assert settings.max_staleness == 2.5
    assert settings.require_signature is False
    assert settings.topic_names() == TopicNames.prefixed("t-1")
    rows = {row["name"]: row for row in settings.describe()}
    assert rows["kafka_bootstrap_servers"]["env"] == "KAFKA_BOOTSTRAP_SERVERS"
    assert rows["redis_url"]["env"] == "REDIS_URL"
    assert rows["max_staleness"]["env"] == "REVOCAST_MAX_STALENESS"
    assert "pw" not in str(rows["redis_url"]["value"])
    assert rows["service"]["default"] == "(required)"
    assert all(row["description"] for row in rows.values())


def test_settings_by_name_and_validation() -> None:
    s = ConsumerSettings(
        service="svc", kafka_bootstrap_servers="h:1", redis_url=None, events_topic="custom"
    )
    assert s.kafka_bootstrap_servers == "h:1"
    assert s.topic_names().events == "custom"
    assert s.topic_names().receipts == TopicNames().receipts
    assert s.instance  # hostname-pid default
    with pytest.raises(ValueError, match="max_staleness"):
        ConsumerSettings(service="svc", max_staleness=0)
    with pytest.raises(ValueError, match="log_level"):
        ConsumerSettings(service="svc", log_level="loud")
    with pytest.raises(ValueError, match="Extra inputs"):
        ConsumerSettings(service="svc", colour="blue")  # type: ignore[call-arg]


# ------------------------------------------------------------ snapshots, dedupe


def test_consumer_snapshot_json() -> None:
    snap = ConsumerSnapshot(topic="t", offsets={0: 1, 1: 0}, state={"v": 1})
    again = ConsumerSnapshot.from_json(snap.to_json())
    assert again == snap
    for bad in (b"", b"[]", b'{"topic": "t"}', b'{"topic":"t","offsets":{"0":-1},"state":{},'
                b'"taken_at":1}'):  # fmt: skip
        with pytest.raises(SnapshotError):
            ConsumerSnapshot.from_json(bad)


def test_event_id_set_is_bounded_and_expires() -> None:
    seen = EventIdSet(max_size=3, ttl=10.0)
    ids = [uuid.uuid4() for _ in range(5)]
    assert seen.add(ids[0], now=0.0)
    assert not seen.add(ids[0], now=1.0)  # duplicate
    for i in ids[1:]:
        assert seen.add(i, now=2.0)
    assert len(seen) == 3  # bounded: the oldest went
    assert ids[0] not in seen
    assert seen.add(uuid.uuid4(), now=20.0)  # everything else expired
    assert len(seen) == 1
