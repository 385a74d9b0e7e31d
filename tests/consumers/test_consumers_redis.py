"""Redis: the shared view across replicas, snapshot warm-up, the per-request baseline."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from consumers import (
    ConsumerSnapshot,
    RedisRevocationStore,
    RedisSessionLookup,
    RedisSnapshotStore,
    RevocationConsumer,
    RevocationState,
    Rule,
    SnapshotError,
)
from consumers.redis_store import connect
from schemas import (
    Envelope,
    KeySet,
    SessionRevoked,
    StoreUnavailableError,
    Subject,
    SubjectKind,
    SubjectOffboarded,
    TopicNames,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = connect(redis_url)
    yield c
    c.close()


@pytest.fixture
def service_name() -> str:
    return f"svc-{uuid.uuid4().hex[:8]}"


def _offboard(subject: str, not_before: float, expires_in: float = 3600) -> Envelope:
    return Envelope.wrap(
        SubjectOffboarded(
            subject=Subject(id=subject, kind=SubjectKind.HUMAN),
            not_before=datetime.fromtimestamp(not_before, UTC),
            expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        ),
        issuer="tests",
    )


def test_shared_view_is_readable_by_another_replica(
    kafka_bootstrap: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    redis_url: str,
    client: redis.Redis,
    service_name: str,
    publisher: Any,
    events: Callable[[int], list[Envelope]],
    has_fact: Callable[[RevocationState, Envelope], bool],
    until: Callable[..., bool],
) -> None:
    writer_view = RedisRevocationStore(client, service_name)
    consumer = RevocationConsumer(
        kafka_bootstrap, topics, service_name, "replica-a", trusted_keys,
        shared_view=writer_view, registry=CollectorRegistry(),
    )  # fmt: skip
    stream = [publisher.send(e) for e in events(25)]
    publisher.flush()
    with consumer:
        assert consumer.wait_ready(30)
        # Replica B has no consumer of its own: it reads the service's shared view.
        reader = RedisRevocationStore(connect(redis_url), service_name)

        def b_sees_all() -> bool:
            state = RevocationState()
            reader.load_into(state)
            return all(has_fact(state, e) for e in stream)

        assert until(b_sees_all, 15)
    session = next(e for e in stream if e.event.type == "session.revoked")
    assert isinstance(session.event, SessionRevoked)
    decision = reader.check({"sub": "x", "sid": session.event.session_id, "iat": 1})
    assert decision.rule is Rule.SESSION_REVOKED
    assert reader.check({"sub": "nobody", "sid": "nope", "jti": "nope", "iat": 1}).allowed
    # Keys expire with the credential: every key has an absolute expiry.
    keys = list(client.scan_iter(match=f"{reader.namespace}:*"))
    assert len(keys) >= 1
    assert all(client.pexpiretime(k) > time.time() * 1000 for k in keys)
    reader.client.close()


def test_redis_writes_are_a_join(client: redis.Redis, service_name: str) -> None:
    store = RedisRevocationStore(client, service_name)
    now = time.time()
    later = _offboard("u-1", now + 100, expires_in=7200)
    earlier = _offboard("u-1", now - 100, expires_in=60)
    store.apply(later)
    store.apply(earlier)  # lower not-before and shorter expiry: must not win
    key = store.key("subjects", "u-1")
    assert float(client.get(key) or 0) == pytest.approx(now + 100)
    assert client.pexpiretime(key) / 1000 == pytest.approx(time.time() + 7200, abs=5)
    # The opposite order converges to the same value.
    other = RedisRevocationStore(client, service_name + "-b")
    other.apply(earlier)
    other.apply(later)
    assert client.get(other.key("subjects", "u-1")) == client.get(key)
    assert store.check({"sub": "u-1", "iat": now + 50}).rule is Rule.SUBJECT_OFFBOARDED
    assert store.check({"sub": "u-1", "iat": now + 150}).allowed
    # Delegation through the shared view, too.
    assert store.check({"sub": "alice", "act": {"sub": "u-1"}, "iat": now}).rule is (
        Rule.DELEGATION_REVOKED
    )


def test_snapshot_warm_up_replays_only_the_tail(
    kafka_bootstrap: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    client: redis.Redis,
    service_name: str,
    publisher: Any,
    events: Callable[[int], list[Envelope]],
    has_fact: Callable[[RevocationState, Envelope], bool],
    until: Callable[..., bool],
) -> None:
    snapshots = RedisSnapshotStore(client, service_name)
    head = [publisher.send(e) for e in events(60)]
    publisher.flush()
    first = RevocationConsumer(
        kafka_bootstrap, topics, service_name, "i-1", trusted_keys,
        snapshots=snapshots, registry=CollectorRegistry(),
    )  # fmt: skip
    with first:
        assert first.wait_ready(30)
        assert first.stats().records == 60
        assert first.warmed_from is None
    saved = snapshots.load(topics.events)  # saved on stop
    assert saved is not None
    assert sum(saved.offsets.values()) == 60
    tail = [publisher.send(e) for e in events(15)]
    publisher.flush()
    second = RevocationConsumer(
        kafka_bootstrap, topics, service_name, "i-2", trusted_keys,
        snapshots=snapshots, registry=CollectorRegistry(),
    )  # fmt: skip
    with second:
        assert second.wait_ready(30)
        assert second.warmed_from is not None
        assert until(lambda: second.stats().records == 15, 10)
        time.sleep(0.3)
        assert second.stats().records == 15, "replayed more than the tail"
        assert all(has_fact(second.state, e) for e in head + tail)


def test_corrupt_snapshot_falls_back_to_full_replay(
    kafka_bootstrap: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    client: redis.Redis,
    service_name: str,
    publisher: Any,
    events: Callable[[int], list[Envelope]],
) -> None:
    snapshots = RedisSnapshotStore(client, service_name)
    client.set(snapshots.key(topics.events), b"{not json")
    with pytest.raises(SnapshotError):
        snapshots.load(topics.events)
    for e in events(10):
        publisher.send(e)
    publisher.flush()
    consumer = RevocationConsumer(
        kafka_bootstrap, topics, service_name, "i-1", trusted_keys,
        snapshots=snapshots, registry=CollectorRegistry(),
    )  # fmt: skip
    with consumer:
        assert consumer.wait_ready(30)
        assert consumer.warmed_from is None
        assert consumer.stats().records == 10


def test_snapshot_round_trip(client: redis.Redis, service_name: str) -> None:
    store = RedisSnapshotStore(client, service_name)
    state = RevocationState()
    state.apply(_offboard("u-9", time.time()))
    snap = ConsumerSnapshot(topic="t", offsets={0: 5, 2: 7}, state=state.snapshot())
    store.save(snap)
    loaded = store.load("t")
    assert loaded is not None
    assert loaded.offsets == {0: 5, 2: 7}
    assert loaded.restore() == state
    assert store.load("other-topic") is None
    store.delete("t")
    assert store.load("t") is None


def test_session_lookup_baseline(client: redis.Redis) -> None:
    lookup = RedisSessionLookup(client, prefix=f"sessions-{uuid.uuid4().hex[:6]}")
    lookup.revoke("s-1", time.time() + 60)
    assert lookup.is_revoked("s-1")
    assert not lookup.is_revoked("s-2")
    lookup.revoke("s-old", time.time() - 1)  # already expired: gone at once
    assert not lookup.is_revoked("s-old")


def test_redis_down_is_a_store_unavailable_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreUnavailableError, match="did not answer") as info:
        connect(f"redis://user:secret@127.0.0.1:{port}/0", timeout=0.5)
    assert info.value.retriable
    assert "secret" not in str(info.value)
    # An operation on a client whose server went away is wrapped too.
    dead = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    with pytest.raises(StoreUnavailableError):
        RedisSessionLookup(dead).is_revoked("s")
    with pytest.raises(StoreUnavailableError):
        RedisRevocationStore(dead, "svc").check({"sid": "s"})
    dead.close()


def test_snapshot_ahead_of_the_topic_is_ignored(
    kafka_bootstrap: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    client: redis.Redis,
    service_name: str,
    publisher: Any,
    events: Callable[[int], list[Envelope]],
) -> None:
    # A snapshot of another log (the topic was recreated): offsets past its end.
    snapshots = RedisSnapshotStore(client, service_name)
    bogus = RevocationState()
    bogus.add("sessions", "from-another-log", time.time() + 600)
    snapshots.save(ConsumerSnapshot(topic=topics.events, offsets={0: 1000}, state=bogus.snapshot()))
    for e in events(5):
        publisher.send(e)
    publisher.flush()
    consumer = RevocationConsumer(
        kafka_bootstrap, topics, service_name, "i-1", trusted_keys,
        snapshots=snapshots, registry=CollectorRegistry(),
    )  # fmt: skip
    with consumer:
        assert consumer.wait_ready(30)
        assert consumer.warmed_from is None
        assert consumer.stats().records == 5
        assert not consumer.state.is_session_revoked("from-another-log")
