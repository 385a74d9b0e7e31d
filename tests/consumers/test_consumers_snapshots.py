"""Snapshots are tied to the events topic's identity (Kafka's topic id), on every engine.

A snapshot taken before the topic was deleted and recreated under the same name
describes another log: its offsets point at other records. It must be refused and
the history replayed in full, even when its offsets happen to lie within the new
topic's range (the older, offsets-only check could not see that).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError
from prometheus_client import CollectorRegistry

from consumers import ConsumerSnapshot, RedisSnapshotStore, RevocationConsumer, RevocationState
from consumers.redis_store import connect
from consumers.testing import measure_bootstrap
from schemas import Envelope, KeySet, TopicNames

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = connect(redis_url)
    yield c
    c.close()


def recreate(bootstrap: str, topic: str, partitions: int = 3, timeout: float = 60) -> None:
    """Delete ``topic`` and create it again under the same name (a new topic id)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="revocast-tests")
    try:
        admin.delete_topics([topic])
        deadline = time.monotonic() + timeout
        while True:
            try:
                admin.create_topics(
                    [NewTopic(name=topic, num_partitions=partitions, replication_factor=1)]
                )
                return
            except (TopicAlreadyExistsError, UnknownTopicOrPartitionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # deletion is asynchronous
    finally:
        admin.close()


def _consumer(
    bootstrap: str, topics: TopicNames, keys: KeySet, store: RedisSnapshotStore, engine: str,
    instance: str,
) -> RevocationConsumer:
    return RevocationConsumer(
        bootstrap, topics, "snap", instance, keys, engine=engine,
        snapshots=store, registry=CollectorRegistry(),
    )  # fmt: skip


def test_a_snapshot_of_a_recreated_topic_is_refused_and_history_replayed(
    engine: str,
    kafka_bootstrap: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    client: redis.Redis,
    publisher: Any,
    events: Callable[[int], list[Envelope]],
    has_fact: Callable[[RevocationState, Envelope], bool],
    until: Callable[..., bool],
) -> None:
    store = RedisSnapshotStore(client, f"snap-{topics.events}")
    old = [publisher.send(e) for e in events(30)]
    publisher.flush()
    first = _consumer(kafka_bootstrap, topics, trusted_keys, store, engine, "i-1")
    with first:
        assert first.wait_ready(30)
        old_id = first.topic_id
    saved = store.load(topics.events)
    assert saved is not None
    assert saved.topic_id == old_id is not None
    assert sum(saved.offsets.values()) == 30

    recreate(kafka_bootstrap, topics.events)
    # More records than before: the old snapshot's offsets lie inside the new log.
    new = [publisher.send(e) for e in events(45)]
    publisher.flush()
    second = _consumer(kafka_bootstrap, topics, trusted_keys, store, engine, "i-2")
    with second:
        assert second.wait_ready(30)
        assert second.topic_id is not None
        assert second.topic_id != old_id
        assert second.warmed_from is None, "a snapshot of the old topic was trusted"
        assert until(lambda: second.stats().records == 45, 15)
        assert all(has_fact(second.state, e) for e in new)
        # Session, token and credential ids are unique per event (subjects are shared).
        unique = [e for e in old if e.event.type in ("session.revoked", "token.revoked")]
        assert unique
        assert not any(has_fact(second.state, e) for e in unique), "the old log leaked in"
    # The next start warms up from the new topic's snapshot and replays only its tail.
    tail = [publisher.send(e) for e in events(5)]
    publisher.flush()
    third = _consumer(kafka_bootstrap, topics, trusted_keys, store, engine, "i-3")
    with third:
        assert third.wait_ready(30)
        assert third.warmed_from is not None
        assert third.warmed_from.topic_id == second.topic_id
        assert until(lambda: third.stats().records == 5, 15)
        assert all(has_fact(third.state, e) for e in new + tail)


def test_refusal_reasons() -> None:
    state = RevocationState().snapshot()
    snap = ConsumerSnapshot(topic="t", offsets={0: 5, 1: 7}, state=state, topic_id="AAAB")
    end = {0: 10, 1: 10}
    assert snap.refusal("AAAB", end) is None
    assert "recreated" in (snap.refusal("CCCD", end) or "")
    assert "beyond the topic's end" in (snap.refusal("AAAB", {0: 10, 1: 3}) or "")
    legacy = ConsumerSnapshot(topic="t", offsets={0: 5}, state=state)
    assert "no topic id" in (legacy.refusal("AAAB", end) or "")
    # A client that cannot tell the topic's id falls back to the offsets check.
    assert legacy.refusal(None, end) is None
    again = ConsumerSnapshot.from_json(snap.to_json())
    assert again.topic_id == "AAAB"
    assert again.offsets == snap.offsets


def test_measure_bootstrap_times_a_cold_start_then_a_start_from_its_snapshot(
    engine: str,
    kafka_bootstrap: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    client: redis.Redis,
    publisher: Any,
    events: Callable[[int], list[Envelope]],
) -> None:
    store = RedisSnapshotStore(client, f"boot-{topics.events}")
    for e in events(40):
        publisher.send(e)
    publisher.flush()
    cold = measure_bootstrap(kafka_bootstrap, topics, trusted_keys, engine=engine,
                             snapshots=store, timeout=60)  # fmt: skip
    assert cold.ready
    assert not cold.from_snapshot
    assert cold.records == 40
    for e in events(6):
        publisher.send(e)
    publisher.flush()
    warm = measure_bootstrap(kafka_bootstrap, topics, trusted_keys, engine=engine,
                             snapshots=store, timeout=60)  # fmt: skip
    assert warm.ready
    assert warm.from_snapshot
    assert warm.snapshot_records == 40
    assert warm.records == 6
    assert warm.entries >= cold.entries
    assert warm.to_dict()["engine"] == engine
