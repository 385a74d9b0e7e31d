"""RevocationConsumer against the real broker, on every engine: fan-out, watermarks and
receipts, dead letters, freshness."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from consumers import RevocationConsumer, RevocationState
from schemas import (
    BrokerUnavailableError,
    ConfigError,
    Envelope,
    Heartbeat,
    KeySet,
    SessionRevoked,
    SigningKey,
    Subject,
    SubjectKind,
    TopicNames,
    UnknownKeyError,
    encode,
    in_seconds,
)
from schemas.topics import DLQ_REASON_HEADER, DLQ_SERVICE_HEADER, DLQ_SOURCE_HEADER
from tests.consumers.conftest import split_receipts

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _consumer(
    bootstrap: str,
    topics: TopicNames,
    keys: KeySet,
    service: str,
    instance: str,
    registry: CollectorRegistry,
    engine: str = "kafka-python",
    **kwargs: Any,
) -> RevocationConsumer:
    return RevocationConsumer(
        bootstrap, topics, service, instance, keys, registry=registry, engine=engine, **kwargs
    )


def test_three_services_two_replicas_each_apply_every_event(
    engine: str,
    kafka_bootstrap: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    publisher: Any,
    events: Callable[[int], list[Envelope]],
    has_fact: Callable[[RevocationState, Envelope], bool],
    read: Callable[..., list[Any]],
    until: Callable[..., bool],
    registry: CollectorRegistry,
) -> None:
    # History published before anyone starts: replayed on start, ready only after it.
    history = [publisher.send(e) for e in events(100)]
    publisher.flush()
    consumers = [
        _consumer(
            kafka_bootstrap, topics, trusted_keys, f"svc-{s}", f"svc-{s}-{r}", registry, engine
        )
        for s in range(3)
        for r in range(2)
    ]
    try:
        for c in consumers:
            c.start()
        for c in consumers:
            assert c.wait_ready(30), f"{c.service}/{c.instance} not ready: {c.freshness().reason}"
            assert all(has_fact(c.state, e) for e in history), "ready before history was applied"
        live = [publisher.send(e) for e in events(100)]
        publisher.flush()
        stream = history + live
        assert until(lambda: all(c.stats().applied == 200 for c in consumers), 30), [
            c.stats() for c in consumers
        ]
        for c in consumers:
            missing = [e.event_id for e in stream if not has_fact(c.state, e)]
            assert not missing, f"{c.instance} misses {len(missing)} events"
    finally:
        for c in consumers:
            c.stop()
    # Every instance published watermarks (flushed by stop()), no record per event, and
    # its last watermark per partition covers that partition's end.
    instances = {(c.service, c.instance) for c in consumers}
    ends = consumers[0].positions()
    assert sum(ends.values()) == len(stream)

    def complete(records: list[Any]) -> bool:
        marks = split_receipts(records)[1]
        return {(m.service, m.instance) for m in marks if m.offsets == ends} >= instances

    receipts, marks = split_receipts(read(kafka_bootstrap, topics.receipts, complete))
    assert receipts == [], "a record per event"
    for c in consumers:
        theirs = [m for m in marks if (m.service, m.instance) == (c.service, c.instance)]
        covered: dict[int, int] = {}
        for m in theirs:
            assert m.engine == engine
            assert m.topic_id == c.topic_id is not None
            for p, o in m.offsets.items():
                assert o >= covered.get(p, 0), "a watermark went backwards"
                covered[p] = o
        assert covered == ends, (c.instance, covered, ends)
    # Metrics: applied by type, ready gauge back to 0 after stop.
    applied = registry.get_sample_value(
        "revocast_consumer_events_applied_total",
        {
            "service": "svc-0",
            "instance": "svc-0-0",
            "flavor": engine,
            "type": "session.revoked",
        },
    )
    assert applied == sum(1 for e in stream if e.event.type == "session.revoked")
    assert (
        registry.get_sample_value(
            "revocast_consumer_apply_latency_seconds_count",
            {"service": "svc-0", "instance": "svc-0-0", "flavor": engine},
        )
        == 100  # only live events are latencies; the replayed history is not
    )


def test_malformed_records_are_dead_lettered_and_the_consumer_keeps_going(
    engine: str,
    kafka_bootstrap: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    signing_key: SigningKey,
    publisher: Any,
    events: Callable[[int], list[Envelope]],
    has_fact: Callable[[RevocationState, Envelope], bool],
    read: Callable[..., list[Any]],
    until: Callable[..., bool],
    registry: CollectorRegistry,
) -> None:
    consumer = _consumer(
        kafka_bootstrap, topics, trusted_keys, "dlq-svc", "dlq-1", registry, engine
    )
    good = events(30)
    stranger = SigningKey.generate("not-trusted")
    valid_json = good[0].model_dump_json().encode()
    signed = signing_key.sign(valid_json).decode()
    head, _payload, sig = signed.split(".")
    tampered_payload = (
        signing_key.sign(valid_json.replace(b"tests", b"evil!")).decode().split(".")[1]
    )
    bad: list[tuple[bytes | None, str]] = [
        (b"\x00\xff.gar\xfebage.\x13", "undecodable"),  # JWS-shaped garbage
        (signing_key.sign(b'{"v": 1, "event": {"type": "session.resurrected"}}'), "unknown_type"),
        (signing_key.sign(b'{"v": 1, "event_id": "nope", "event": {"type": "token.revoked"}}'),
         "schema_invalid"),
        (signing_key.sign(valid_json.replace(b'"v":1', b'"v":7')), "unsupported_version"),
        (valid_json, "missing_signature"),
        (stranger.sign(valid_json), "unknown_key"),
        (f"{head}.{tampered_payload}.{sig}".encode(), "bad_signature"),
        (None, "undecodable"),
    ]  # fmt: skip
    with consumer:
        assert consumer.wait_ready(30)
        sent_bad = []
        for i, envelope in enumerate(good):
            publisher.send(envelope)
            if i % 4 == 1 and bad:
                value, reason = bad.pop(0)
                publisher.send_raw(value, key=f"bad-{reason}".encode(), headers=[("origin", b"t")])
                sent_bad.append(reason)
        assert not bad
        publisher.flush()
        assert until(lambda: consumer.stats().applied == len(good), 30), consumer.stats()
        assert until(lambda: consumer.stats().dead_lettered == len(sent_bad), 10)
        assert consumer.error is None
        assert consumer.ready
        assert all(has_fact(consumer.state, e) for e in good)
        # Still running: a good event after the bad ones is applied too.
        late = publisher.send(events(1)[0])
        publisher.flush()
        assert until(lambda: has_fact(consumer.state, late), 10)
    dlq = read(kafka_bootstrap, topics.dead_letter, lambda r: len(r) >= len(sent_bad))
    assert len(dlq) == len(sent_bad)
    reasons = Counter(dict(r.headers)[DLQ_REASON_HEADER].decode() for r in dlq)
    assert reasons == Counter(sent_bad)
    for record in dlq:
        headers = dict(record.headers)
        reason = headers[DLQ_REASON_HEADER].decode()
        assert record.key == f"bad-{reason}".encode()  # original key, byte for byte
        assert headers["origin"] == b"t"  # original headers kept
        assert headers[DLQ_SERVICE_HEADER] == b"dlq-svc/dlq-1"
        assert headers[DLQ_SOURCE_HEADER].decode().startswith(f"{topics.events}/")
    assert {b"\x00\xff.gar\xfebage.\x13", valid_json} <= {r.value for r in dlq}  # byte for byte
    assert (
        registry.get_sample_value(
            "revocast_consumer_dead_lettered_total",
            {
                "service": "dlq-svc",
                "instance": "dlq-1",
                "flavor": engine,
                "reason": "unknown_key",
            },
        )
        == 1
    )
    assert UnknownKeyError.reason == "unknown_key"


def test_freshness_follows_heartbeats_per_partition(
    engine: str,
    kafka_bootstrap: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    publisher: Any,
    until: Callable[..., bool],
    registry: CollectorRegistry,
) -> None:
    consumer = _consumer(
        kafka_bootstrap, topics, trusted_keys, "fresh", "fresh-1", registry, engine,
        max_staleness=1.0,
    )  # fmt: skip
    with consumer:
        assert consumer.wait_ready(30)
        # Ready, but no partition has been heard from: privileged checks deny.
        assert "no heartbeat" in (consumer.denial() or "")
        publisher.heartbeats()
        publisher.flush()
        assert until(lambda: consumer.denial() is None, 10), consumer.denial()
        report = consumer.freshness()
        assert report.fresh
        assert report.ready
        assert [p.partition for p in report.partitions] == [0, 1, 2]
        assert all(p.staleness < 1.0 for p in report.partitions)
        # Heartbeats stop on partition 1 only: the view goes stale, naming it.
        deadline = time.monotonic() + 10
        reason = None
        while time.monotonic() < deadline:
            for p in (0, 2):
                publisher.send(
                    Envelope.wrap(Heartbeat(partition=p, emitter="t"), issuer="t"), partition=p
                )
            publisher.flush()
            reason = consumer.denial()
            if reason is not None:
                break
            time.sleep(0.2)
        assert reason is not None
        assert reason.startswith("partition 1:"), reason
        assert consumer.freshness().to_dict()["fresh"] is False
        assert (
            registry.get_sample_value(
                "revocast_consumer_ready",
                {"service": "fresh", "instance": "fresh-1", "flavor": engine},
            )
            == 1
        )
        staleness = registry.get_sample_value(
            "revocast_consumer_partition_staleness_seconds",
            {"service": "fresh", "instance": "fresh-1", "flavor": engine, "partition": "1"},
        )
        assert staleness is not None
        assert staleness > 1.0
    assert consumer.denial() is not None  # stopped: never fresh


def test_duplicates_are_applied_once_and_receipted_once(
    engine: str,
    kafka_bootstrap: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    signing_key: SigningKey,
    publisher: Any,
    read: Callable[..., list[Any]],
    until: Callable[..., bool],
    registry: CollectorRegistry,
) -> None:
    env = Envelope.wrap(
        SessionRevoked(subject=Subject(id="u", kind=SubjectKind.HUMAN), session_id="s-dup",
                       expires_at=in_seconds(600)),
        issuer="tests",
    )  # fmt: skip
    consumer = _consumer(kafka_bootstrap, topics, trusted_keys, "dup", "dup-1", registry, engine)
    with consumer:
        assert consumer.wait_ready(30)
        for _ in range(3):  # at-least-once delivery: the same record three times
            publisher.send_raw(encode(env, signing_key), key=b"u")
        publisher.flush()
        # records is counted before decoding, duplicates after: wait for the last count.
        assert until(lambda: consumer.stats().duplicates == 2, 10), consumer.stats()
        assert consumer.stats().records == 3
        assert consumer.stats().applied == 1
        assert consumer.stats().duplicates == 2
    # Watermarks cover the three records; nothing is reported per event.
    records = read(
        kafka_bootstrap, topics.receipts,
        lambda r: any(sum(m.offsets.values()) == 3 for m in split_receipts(r)[1]), timeout=15,
    )  # fmt: skip
    receipts, marks = split_receipts(records)
    assert receipts == []
    assert any(sum(m.offsets.values()) == 3 for m in marks)


def test_unreachable_broker_is_a_clear_broker_unavailable_error(
    engine: str,
    topics: TopicNames, trusted_keys: KeySet, registry: CollectorRegistry
) -> None:
    # A loopback listener that never speaks Kafka. (A port nobody listens on
    # would do too, but kafka-python 3.0.12 leaks the socket of a refused
    # connect - kafka/net/inet.py KafkaNetSocket.connect never closes it.)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        consumer = RevocationConsumer(
            f"127.0.0.1:{port}", topics, "down", "down-1", trusted_keys,
            registry=registry, connect_timeout=1.0, engine=engine,
        )  # fmt: skip
        with pytest.raises(BrokerUnavailableError, match=f"127.0.0.1:{port}") as info:
            consumer.start()
    assert info.value.retriable
    assert "within 1s" in str(info.value)


def test_missing_events_topic_is_a_config_error(
    engine: str,
    kafka_bootstrap: str, trusted_keys: KeySet, registry: CollectorRegistry
) -> None:
    names = TopicNames.prefixed(f"missing-{time.time_ns()}")
    consumer = RevocationConsumer(
        kafka_bootstrap, names, "lost", "lost-1", trusted_keys, registry=registry,
        topic_timeout=1.0, engine=engine,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="does not exist"):
        consumer.start()


def test_signature_required_without_keys_is_a_config_error(topics: TopicNames) -> None:
    with pytest.raises(ConfigError, match="no trusted event-signing keys"):
        RevocationConsumer("127.0.0.1:1", topics, "s", "i", None)
