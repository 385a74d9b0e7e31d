"""Tenants end to end: signed events through the real broker into a consumer's view and
its Redis shared view; offboarding alice@acme never rejects alice@globex."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from consumers import RedisRevocationStore, RevocationConsumer, Rule
from consumers.redis_store import connect
from schemas import (
    Envelope,
    KeySet,
    SigningKey,
    Subject,
    SubjectKind,
    SubjectOffboarded,
    TopicNames,
)
from tests.consumers.conftest import Publisher, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_a_tenant_offboarding_through_kafka_and_redis(
    kafka_bootstrap: str,
    redis_url: str,
    topics: TopicNames,
    signing_key: SigningKey,
    trusted_keys: KeySet,
) -> None:
    redis_client = connect(redis_url)
    shared = RedisRevocationStore(redis_client, "orders:eu", prefix=f"t-{uuid.uuid4().hex[:8]}")
    publisher = Publisher(kafka_bootstrap, topics, signing_key)
    consumer = RevocationConsumer(
        kafka_bootstrap,
        topics,
        "orders:eu",
        "orders-1",
        trusted_keys,
        shared_view=shared,
        registry=CollectorRegistry(),
        publish_receipts=False,
    )
    try:
        consumer.start()
        assert consumer.wait_ready(timeout=60)
        event = SubjectOffboarded(
            subject=Subject(id="alice", kind=SubjectKind.HUMAN, tenant="acme"),
            not_before=datetime.now(UTC),
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
        publisher.send(Envelope.wrap(event, issuer="tests"))
        publisher.producer.flush(10)
        iat = int(time.time()) - 60
        acme = {"sub": "alice", "iat": iat, "tid": "acme"}
        globex = {"sub": "alice", "iat": iat, "tid": "globex"}
        assert wait_until(lambda: not consumer.state.check(acme).allowed, 30)
        assert consumer.state.check(globex).allowed
        assert consumer.state.check({"sub": "alice", "iat": iat}).rule is Rule.SUBJECT_OFFBOARDED
        assert wait_until(lambda: not shared.check(acme).allowed, 30)
        assert shared.check(globex).allowed
    finally:
        consumer.stop()
        publisher.producer.close(5)
        redis_client.close()
