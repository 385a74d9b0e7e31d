"""Publisher, topics, heartbeat and receipt tracker against the real broker."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from kafka.admin import KafkaAdminClient
from kafka.admin._configs import ConfigResource, ConfigResourceType
from producer_testkit import produce_raw, produce_receipts, read_records

from producer import (
    BulkPublishError,
    HeartbeatEmitter,
    NotInForceError,
    ReceiptTracker,
    RevocationPublisher,
    ensure_topics,
)
from schemas import (
    BrokerUnavailableError,
    ConfigError,
    Envelope,
    Heartbeat,
    InvalidEventError,
    KeySet,
    MissingSignatureError,
    PublishError,
    Receipt,
    SessionRevoked,
    SigningKey,
    Subject,
    SubjectOffboarded,
    TokenRevoked,
    TopicNames,
    UnknownKeyError,
    decode,
    decode_records,
    in_seconds,
)
from schemas.batch import MAX_BATCH_BYTES, MAX_BATCH_EVENTS

pytestmark = pytest.mark.integration


def session(subject: str = "u-1", sid: str = "s-1") -> SessionRevoked:
    return SessionRevoked(
        subject=Subject(id=subject, kind="human"), session_id=sid, expires_at=in_seconds(3600)
    )


def fresh_topics() -> TopicNames:
    return TopicNames.prefixed(f"p-{uuid.uuid4().hex[:10]}")


# --------------------------------------------------------------------------- topics


def test_ensure_topics_creates_with_retention_covering_credentials(kafka_bootstrap: str) -> None:
    names = fresh_topics()
    report = ensure_topics(
        kafka_bootstrap,
        names,
        partitions=2,
        replication_factor=1,
        min_insync_replicas=1,
        max_credential_lifetime=timedelta(hours=12),
        margin=timedelta(hours=2),
        receipts_retention=timedelta(hours=1),
    )
    assert report.ok, report.warnings
    events = report.by_role("events")
    assert events.created
    assert events.partitions == 2
    assert events.replication_factor == 1
    assert events.retention_ms == 14 * 3_600_000
    assert report.by_role("dead_letter").retention_ms == 14 * 3_600_000
    assert report.by_role("receipts").retention_ms == 3_600_000
    assert events.min_insync_replicas == 1

    # Idempotent: a second run creates nothing and finds nothing wrong.
    again = ensure_topics(
        kafka_bootstrap,
        names,
        partitions=2,
        max_credential_lifetime=timedelta(hours=12),
        margin=timedelta(hours=2),
        receipts_retention=timedelta(hours=1),
    )
    assert again.ok
    assert not any(t.created for t in again.topics)


def test_ensure_topics_warns_about_unsafe_existing_topics(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    names = fresh_topics()
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics(
            {
                names.events: {
                    "num_partitions": 1,
                    "replication_factor": 1,
                    "configs": {"retention.ms": "60000", "cleanup.policy": "compact"},
                }
            }
        )
    finally:
        admin.close()
    report = ensure_topics(
        kafka_bootstrap,
        names,
        partitions=3,
        max_credential_lifetime=timedelta(hours=24),
        margin=timedelta(hours=1),
    )
    events = report.by_role("events")
    assert not events.created
    text = " | ".join(events.warnings)
    assert "retention.ms=60000" in text
    assert "shorter than the longest credential lifetime" in text
    assert "cleanup.policy=compact" in text
    assert "has 1 partitions, 3 requested" in text
    # The other two were created correctly and have no warnings.
    assert report.by_role("receipts").created
    assert not report.by_role("receipts").warnings
    assert any("retention.ms=60000" in r.getMessage() for r in caplog.records)


def test_ensure_topics_rejects_impossible_settings(kafka_bootstrap: str) -> None:
    with pytest.raises(ConfigError, match="min_insync_replicas"):
        ensure_topics(kafka_bootstrap, fresh_topics(), replication_factor=1, min_insync_replicas=2)
    with pytest.raises(ConfigError, match="replication factor of 3"):
        ensure_topics(kafka_bootstrap, fresh_topics(), replication_factor=3, min_insync_replicas=2)


def test_ensure_topics_unreachable_broker() -> None:
    began = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match="did not answer within 1 s"):
        ensure_topics("127.0.0.1:1", fresh_topics(), timeout=1.0)
    assert time.monotonic() - began < 10


# --------------------------------------------------------------------------- publisher


def test_publish_is_acknowledged_signed_and_keyed_by_subject(
    kafka_bootstrap: str, topics: TopicNames, signing_key: SigningKey, trusted_keys: KeySet
) -> None:
    with RevocationPublisher(kafka_bootstrap, topics, signing_key, issuer="iam.test") as pub:
        before = time.time_ns()
        first = pub.publish(session("alice", "s-1"))
        second = pub.publish(session("alice", "s-2"))
        other = pub.publish(
            TokenRevoked(
                subject=Subject(id="bob", kind="ai_agent"), jti="j-1", expires_at=in_seconds(60)
            )
        )
    assert first.topic == topics.events
    assert first.partition == second.partition  # same subject, same partition...
    assert second.offset > first.offset  # ...in publish order
    assert first.published_at_ns >= before
    records = {r.value: r for r in read_records(kafka_bootstrap, topics.events, 3)}
    assert len(records) == 3
    by_id = {}
    for value, record in records.items():
        env = decode(value, trusted_keys)
        by_id[env.event_id] = (env, record)
    env, record = by_id[first.event_id]
    assert record.key == b"alice"
    assert (record.partition, record.offset) == (first.partition, first.offset)
    assert env.issuer == "iam.test"
    assert env.published_at_ns == first.published_at_ns
    assert isinstance(env.event, SessionRevoked)
    assert env.event.session_id == "s-1"
    assert by_id[other.event_id][1].key == b"bob"


def test_envelopes_are_restamped_just_before_send(
    kafka_bootstrap: str, topics: TopicNames, signing_key: SigningKey
) -> None:
    env = Envelope.wrap(session(), issuer="x")
    time.sleep(0.05)
    with RevocationPublisher(kafka_bootstrap, topics, signing_key) as pub:
        published = pub.publish(env)
    assert published.event_id == env.event_id
    assert published.published_at_ns >= env.published_at_ns + 50_000_000


def _offboardings(n: int, subjects: int) -> list[SubjectOffboarded]:
    return [
        SubjectOffboarded(
            subject=Subject(id=f"svc-{i % subjects}", kind="service_account"),
            not_before=datetime.now(UTC),
            expires_at=in_seconds(600),
        )
        for i in range(n)
    ]


def test_publish_many_one_record_per_event_when_batches_are_off(
    kafka_bootstrap: str, topics: TopicNames, signing_key: SigningKey, trusted_keys: KeySet
) -> None:
    events = _offboardings(3000, 50)
    with RevocationPublisher(kafka_bootstrap, topics, signing_key, batch_records=False) as pub:
        published = pub.publish_many(events)
    assert len(published) == 3000
    assert len({p.event_id for p in published}) == 3000
    assert len({(p.partition, p.offset) for p in published}) == 3000  # no two share a slot
    # Per-subject order: offsets grow with input order within a subject.
    last: dict[tuple[int, int], int] = {}
    for i, p in enumerate(published):
        key = (i % 50, p.partition)
        assert p.offset > last.get(key, -1)
        last[key] = p.offset
    records = read_records(kafka_bootstrap, topics.events, 3000)
    assert len(records) == 3000
    ids = {decode(r.value, trusted_keys).event_id for r in records}
    assert ids == {p.event_id for p in published}


def test_publish_many_packs_each_partition_into_signed_batch_records(
    kafka_bootstrap: str, topics: TopicNames, signing_key: SigningKey, trusted_keys: KeySet
) -> None:
    events = _offboardings(3000, 50)
    with RevocationPublisher(kafka_bootstrap, topics, signing_key) as pub:
        published = pub.publish_many(events)
        single = pub.publish(session("svc-1", "alone"))  # publish() stays one event per record
    assert len(published) == 3000
    assert [p.event_id for p in published] == [p.event_id for p in published]
    slots = {(p.partition, p.offset) for p in published}
    assert len(slots) < 3000 / 10  # batches, not records per event
    records = read_records(kafka_bootstrap, topics.events, len(slots) + 1)
    assert len(records) == len(slots) + 1
    where: dict[uuid.UUID, tuple[int, int, int]] = {}
    subject_partition: dict[str, int] = {}
    for r in records:
        envs = decode_records(r.value, trusted_keys)
        assert r.key is None or len(envs) == 1  # batch records carry no key
        assert len(envs) <= MAX_BATCH_EVENTS
        assert len(r.value) <= MAX_BATCH_BYTES
        for n, env in enumerate(envs):
            where[env.event_id] = (r.partition, r.offset, n)
            # One subject, one partition: the same partition publish() picks by key.
            assert isinstance(env.event, SubjectOffboarded | SessionRevoked)
            sid = env.event.subject.id
            assert subject_partition.setdefault(sid, r.partition) == r.partition
    assert where[single.event_id][:2] == (single.partition, single.offset)
    # Every event is exactly where its Published says, and in input order per subject.
    last: dict[int, tuple[int, int]] = {}
    for i, p in enumerate(published):
        partition, offset, n = where[p.event_id]
        assert (partition, offset) == (p.partition, p.offset)
        assert (offset, n) > last.get(i % 50, (-1, -1))
        last[i % 50] = (offset, n)


def test_key_rotation_overlap_loses_nothing(kafka_bootstrap: str, topics: TopicNames) -> None:
    old, new = SigningKey.generate("2026-10"), SigningKey.generate("2026-11")
    overlap = KeySet.of([old, new])
    with RevocationPublisher(kafka_bootstrap, topics, old) as pub:
        before = [pub.publish(session("u", f"old-{i}")) for i in range(5)]
        pub.rotate_key(new)
        assert pub.kid == "2026-11"
        after = pub.publish_many([session("u", f"new-{i}") for i in range(5)])
    assert len({(p.partition, p.offset) for p in after}) == 1  # one subject: one batch record
    records = read_records(kafka_bootstrap, topics.events, 6)
    decoded = [e for r in records for e in decode_records(r.value, overlap)]
    assert {e.event_id for e in decoded} == {p.event_id for p in before + after}
    # Consumers that only know the old key refuse the new record whole (never apply it).
    only_old = KeySet.of([old])
    refused = 0
    for r in records:
        try:
            decode_records(r.value, only_old)
        except UnknownKeyError:
            refused += 1
    assert refused == 1


def test_forged_and_unsigned_events_are_rejected_by_the_decode_path(
    kafka_bootstrap: str, topics: TopicNames, signing_key: SigningKey, trusted_keys: KeySet
) -> None:
    forger = SigningKey.generate(signing_key.kid)  # same kid, different key
    stranger = SigningKey.generate("who-dis")
    with RevocationPublisher(kafka_bootstrap, topics, forger) as pub:
        forged = pub.publish(session("victim", "s-forged"))
    with pytest.raises(ConfigError, match="signing key is required"):
        RevocationPublisher(kafka_bootstrap, topics, None)
    with RevocationPublisher(kafka_bootstrap, topics, None, allow_unsigned=True) as pub:
        unsigned = pub.publish(session("victim", "s-unsigned"))
    with RevocationPublisher(kafka_bootstrap, topics, stranger) as pub:
        pub.publish(session("victim", "s-stranger"))
    records = read_records(kafka_bootstrap, topics.events, 3)
    assert len(records) == 3
    outcomes = []
    for record in records:
        with pytest.raises(InvalidEventError) as info:
            decode(record.value, trusted_keys)
        outcomes.append(type(info.value).__name__)
    assert sorted(outcomes) == ["BadSignatureError", "MissingSignatureError", "UnknownKeyError"]
    assert forged.event_id != unsigned.event_id
    with pytest.raises(MissingSignatureError):
        decode(next(r.value for r in records if r.value.startswith(b"{")), trusted_keys)


def test_missing_topic_and_unreachable_broker_fail_clearly(
    signing_key: SigningKey, kafka_bootstrap: str
) -> None:
    with pytest.raises(ConfigError, match=r"does not exist.*revocast topics ensure"):
        RevocationPublisher(kafka_bootstrap, fresh_topics(), signing_key, connect_timeout=5)
    began = time.monotonic()
    with pytest.raises(BrokerUnavailableError) as info:
        RevocationPublisher("127.0.0.1:1", fresh_topics(), signing_key, connect_timeout=1.0)
    assert time.monotonic() - began < 10
    assert "\n" not in str(info.value)
    assert "127.0.0.1:1" in str(info.value)


def test_publish_many_names_events_that_were_not_acknowledged(
    kafka_bootstrap: str, topics: TopicNames, signing_key: SigningKey, trusted_keys: KeySet
) -> None:
    # The broker refuses records over max.message.bytes: that event fails, the rest land.
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topics.events, {"max.message.bytes": "1200"})]
        )
        # The broker applies the change from the metadata log: wait until it says so.
        wanted = ConfigResource(ConfigResourceType.TOPIC, topics.events, ["max.message.bytes"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = admin.describe_configs([wanted]).get("topic", {}).get(topics.events, {})
            if found.get("max.message.bytes", {}).get("value") == "1200":
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the broker did not apply max.message.bytes=1200 within 10 s")
    finally:
        admin.close()
    big = SessionRevoked(
        subject=Subject(id="u" * 256, kind="human", tenant="t" * 256),
        session_id="s" * 256,
        expires_at=in_seconds(60),
        reason="x" * 512,
    )
    with RevocationPublisher(kafka_bootstrap, topics, signing_key) as pub:
        with pytest.raises(BulkPublishError) as info:
            # One partition each, so the big record is alone in its batch.
            pub.publish_many([session("a"), big, session("b")], partitions=[0, 1, 2])
        # The same publisher keeps working. (Partition 0: kafka-python may still be
        # retrying the refused batch on partition 1, and would batch a new record with it.)
        recovered = pub.publish(session("c"), partition=0)
    assert recovered.offset >= 0
    err = info.value
    assert isinstance(err, PublishError)
    failed = {f.index for f in err.failed}
    assert 1 in failed
    refused = next(f for f in err.failed if f.index == 1)
    assert "rejected by Kafka" in refused.error
    assert "MessageSizeTooLarge" in refused.error
    # Every event is accounted for exactly once: acknowledged or named as failed.
    # (kafka-python may also fail a sibling batch sent after the refusal.)
    assert len(err.published) + len(err.failed) == 3
    assert f"{len(failed)} of 3 events were not acknowledged" in str(err)
    # What was reported as published is on the topic, where it was reported; the
    # refused event is not. (An event reported as not acknowledged may still be
    # there: "not acknowledged" never claims "absent", and republishing is safe.)
    records = read_records(kafka_bootstrap, topics.events, 4, timeout=3)
    where = {(r.partition, r.offset) for r in records}
    assert {(p.partition, p.offset) for p in err.published} <= where
    assert (recovered.partition, recovered.offset) in where
    on_topic = {decode(r.value, trusted_keys).event_id for r in records}
    assert refused.event_id not in on_topic

    # A refused batch record: every event in it is named, with the broker's reason.
    with (
        RevocationPublisher(kafka_bootstrap, topics, signing_key) as pub,
        pytest.raises(BulkPublishError) as batch_info,
    ):
        pub.publish_many(
            [session("solo"), session("b", "x"), session("b", "y"), session("b", "z")],
            partitions=[0, 2, 2, 2],
        )
    in_batch = {f.index: f.error for f in batch_info.value.failed if f.index in (1, 2, 3)}
    assert set(in_batch) == {1, 2, 3}
    assert all("MessageSizeTooLarge" in error for error in in_batch.values())
    assert len(batch_info.value.published) + len(batch_info.value.failed) == 4


# --------------------------------------------------------------------------- heartbeat


def test_heartbeat_reaches_every_partition_on_schedule(
    kafka_bootstrap: str, topics: TopicNames, signing_key: SigningKey, trusted_keys: KeySet
) -> None:
    with RevocationPublisher(kafka_bootstrap, topics, signing_key) as pub:
        emitter = HeartbeatEmitter(pub, interval=0.2, emitter="hb-test")
        began = time.monotonic()
        emitter.run(duration=1.0)
        took = time.monotonic() - began
    assert 0.9 < took < 3.0
    assert 4 <= emitter.beats <= 6
    assert emitter.failures == 0
    records = read_records(kafka_bootstrap, topics.events, emitter.beats * 3)
    per_partition: dict[int, int] = {}
    for record in records:
        env = decode(record.value, trusted_keys)
        assert isinstance(env.event, Heartbeat)
        assert env.event.partition == record.partition  # each beat names its own partition
        assert env.event.emitter == "hb-test"
        assert record.key is None
        per_partition[record.partition] = per_partition.get(record.partition, 0) + 1
    assert per_partition == {p: emitter.beats for p in range(3)}


def test_heartbeat_thread_stops_promptly(
    kafka_bootstrap: str, topics: TopicNames, signing_key: SigningKey
) -> None:
    with RevocationPublisher(kafka_bootstrap, topics, signing_key) as pub:
        with HeartbeatEmitter(pub, interval=5.0) as emitter:
            time.sleep(0.3)
        began = time.monotonic()
        emitter.stop()
        assert time.monotonic() - began < 1.0
    assert emitter.beats == 1


# --------------------------------------------------------------------------- tracker


def receipt(
    event_id: uuid.UUID, service: str, instance: str, latency_ms: float, published_at_ns: int
) -> Receipt:
    return Receipt(
        service=service,
        instance=instance,
        event_id=event_id,
        event_type="session.revoked",
        published_at_ns=published_at_ns,
        applied_at_ns=published_at_ns + int(latency_ms * 1e6),
        partition=0,
        offset=0,
    )


def test_tracker_reports_in_force_with_per_service_latencies(
    kafka_bootstrap: str, topics: TopicNames, signing_key: SigningKey
) -> None:
    with (
        ReceiptTracker(kafka_bootstrap, topics) as tracker,
        RevocationPublisher(kafka_bootstrap, topics, signing_key, tracker=tracker) as pub,
    ):
        rev = pub.revoke(session())
        t0 = rev.published.published_at_ns
        produce_receipts(
            kafka_bootstrap,
            topics.receipts,
            [
                receipt(rev.event_id, "api", "api-1", 2.0, t0),
                receipt(rev.event_id, "api", "api-2", 7.5, t0),
                receipt(rev.event_id, "api", "api-1", 9.0, t0),  # a replay: first one counts
                receipt(rev.event_id, "billing", "billing-1", 4.0, t0),
                receipt(uuid.uuid4(), "api", "api-1", 1.0, t0),  # another event
            ],
        )
        produce_raw(kafka_bootstrap, topics.receipts, [(None, b"not a receipt")])
        result = rev.wait_in_force(["api", "billing"], timeout=10)
        assert result.event_id == rev.event_id
        assert result.services["api"].first_ms == 2.0
        assert result.services["api"].last_ms == 7.5
        assert [i.instance for i in result.services["api"].instances] == ["api-1", "api-2"]
        assert result.services["billing"].first_ms == 4.0
        assert result.latency_ms == 4.0  # in force once the slowest service had one instance
        both = tracker.wait_in_force(rev.event_id, ["api"], timeout=1, min_instances=2)
        assert both.latency_ms == 7.5

        began = time.monotonic()
        with pytest.raises(NotInForceError) as info:
            rev.wait_in_force(["api", "search", "mail"], timeout=0.5)
        assert 0.4 < time.monotonic() - began < 3
        assert info.value.missing == ("search", "mail")
        assert "not in force in search, mail" in str(info.value)
        assert set(info.value.status.services) == {"api", "billing"}
        status = rev.status()
        assert status.event_type == "session.revoked"
        assert status.missing(["api", "billing", "search"]) == ["search"]
        deadline = time.monotonic() + 5
        while tracker.invalid_receipts == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tracker.invalid_receipts == 1


def test_tracker_start_points(kafka_bootstrap: str, topics: TopicNames) -> None:
    old_id = uuid.uuid4()
    produce_receipts(
        kafka_bootstrap, topics.receipts, [receipt(old_id, "api", "a", 1.0, time.time_ns())]
    )
    with ReceiptTracker(kafka_bootstrap, topics, start="end") as from_end:
        with ReceiptTracker(kafka_bootstrap, topics, start="beginning", only=[old_id]) as full:
            full.catch_up(timeout=10)
            assert set(full.status(old_id).services) == {"api"}
        since = ReceiptTracker(
            kafka_bootstrap, topics, start=datetime.now(UTC) - timedelta(minutes=5)
        )
        with since:
            since.catch_up(timeout=10)
            assert set(since.status(old_id).services) == {"api"}
        time.sleep(0.3)
        assert from_end.status(old_id).services == {}
        new_id = uuid.uuid4()
        produce_receipts(
            kafka_bootstrap, topics.receipts, [receipt(new_id, "web", "w", 1.0, time.time_ns())]
        )
        assert from_end.wait_in_force(new_id, ["web"], timeout=10).services["web"].first_ms == 1.0


def test_tracker_needs_the_receipts_topic(kafka_bootstrap: str) -> None:
    with pytest.raises(ConfigError, match=r"receipts topic .* does not exist"):
        ReceiptTracker(kafka_bootstrap, fresh_topics(), connect_timeout=5).start()
