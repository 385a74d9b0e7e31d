"""Watermarks on every engine: exact to the batch, signed by the instance, presence while idle."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from jwt.utils import base64url_encode
from prometheus_client import CollectorRegistry

from consumers import RevocationConsumer
from schemas import (
    BadSignatureError,
    Envelope,
    KeySet,
    SigningKey,
    TopicNames,
    UnknownKeyError,
    Watermark,
    decode,
)
from tests.consumers.conftest import split_receipts

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _make(
    bootstrap: str, topics: TopicNames, keys: KeySet, engine: str, **kwargs: Any
) -> RevocationConsumer:
    return RevocationConsumer(
        bootstrap, topics, "wm", f"wm-{uuid.uuid4().hex[:6]}", keys,
        engine=engine, registry=CollectorRegistry(), **kwargs,
    )  # fmt: skip


def test_a_watermark_covers_an_event_only_once_it_is_applied(
    engine: str,
    kafka_bootstrap: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    publisher: Any,
    events: Callable[[int], list[Envelope]],
    read: Callable[..., list[Any]],
    until: Callable[..., bool],
) -> None:
    applied: dict[uuid.UUID, int] = {}

    def on_applied(envelope: Envelope, applied_ns: int) -> None:
        applied[envelope.event_id] = applied_ns

    history = [publisher.send(e) for e in events(40)]
    publisher.flush()
    consumer = _make(
        kafka_bootstrap, topics, trusted_keys, engine,
        on_applied=on_applied,
    )  # fmt: skip
    sent = list(history)
    with consumer:
        assert consumer.wait_ready(30)
        # Live bursts of different sizes with pauses: several batches, several watermarks.
        for size in (1, 7, 3, 20, 1, 5):
            sent += [publisher.send(e) for e in events(size)]
            publisher.flush()
            time.sleep(0.05)
        assert until(lambda: len(applied) == len(sent), 30), (len(applied), len(sent))
    where: dict[uuid.UUID, tuple[int, int]] = {}
    for r in read(kafka_bootstrap, topics.events, lambda rs: len(rs) >= len(sent)):
        where[decode(r.value, trusted_keys).event_id] = (r.partition, r.offset)

    def complete(records: list[Any]) -> bool:
        marks = split_receipts(records)[1]
        return any(m.offsets == consumer.positions() for m in marks)

    receipts, marks = split_receipts(read(kafka_bootstrap, topics.receipts, complete))
    assert receipts == []  # watermarks only
    assert marks, "no watermark"
    assert {(m.service, m.instance, m.engine) for m in marks} == {("wm", consumer.instance, engine)}
    assert all(m.topic == topics.events and m.topic_id == consumer.topic_id for m in marks)
    assert consumer.topic_id  # Kafka 4 gives every topic an id
    live = [m for m in marks if m.ready]
    assert len(live) >= 3, "live batches were not reported batch by batch"
    for env in sent:
        partition, offset = where[env.event_id]
        first = next((m for m in marks if m.covers(partition, offset)), None)
        assert first is not None, f"{env.event_id} at {partition}/{offset} never covered"
        # Never claims an event before it was applied: exact to the batch.
        assert first.applied_at_ns >= applied[env.event_id], (partition, offset)
    # Offsets per partition never go backwards across an instance's watermarks.
    seen: dict[int, int] = {}
    for m in marks:
        for p, o in m.offsets.items():
            assert o >= seen.get(p, 0)
            seen[p] = o


def test_watermarks_are_signed_by_the_instance_and_a_forgery_is_refused(
    engine: str,
    kafka_bootstrap: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    publisher: Any,
    read: Callable[..., list[Any]],
) -> None:
    instance_key = SigningKey.generate("orders-1")
    service_keys = KeySet.of([instance_key])
    publisher.heartbeats()
    publisher.flush()
    consumer = _make(
        kafka_bootstrap, topics, trusted_keys, engine,
        instance_key=instance_key, watermark_period=0.2,
    )  # fmt: skip
    with consumer:
        assert consumer.wait_ready(30)
        time.sleep(0.5)
    records = read(kafka_bootstrap, topics.receipts, lambda r: len(r) >= 2)
    assert records
    for r in records:
        assert r.key == f"wm/{consumer.instance}".encode()
        mark = Watermark.from_bytes(r.value, service_keys, require_signature=True)
        assert mark.instance == consumer.instance
    # Whoever can write the receipts topic, without the instance's key, cannot pass.
    forged = records[-1].value.decode().split(".")
    claim = Watermark.from_bytes(records[-1].value)
    bigger = claim.model_copy(update={"offsets": {0: 10**9, 1: 10**9, 2: 10**9}})
    stranger = SigningKey.generate("orders-1")  # same kid, other key
    with pytest.raises(BadSignatureError):
        Watermark.from_bytes(bigger.to_bytes(stranger), service_keys, require_signature=True)
    payload = base64url_encode(bigger.to_bytes()).decode()
    spliced = f"{forged[0]}.{payload}.{forged[2]}".encode()  # a real signature, other claims
    with pytest.raises(BadSignatureError):
        Watermark.from_bytes(spliced, service_keys, require_signature=True)
    with pytest.raises(UnknownKeyError):
        Watermark.from_bytes(
            bigger.to_bytes(SigningKey.generate("other")), service_keys, require_signature=True
        )


def test_an_idle_instance_announces_itself_every_period(
    engine: str,
    kafka_bootstrap: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    publisher: Any,
    read: Callable[..., list[Any]],
) -> None:
    publisher.heartbeats()
    publisher.flush()
    consumer = _make(kafka_bootstrap, topics, trusted_keys, engine, watermark_period=0.2)
    with consumer:
        assert consumer.wait_ready(30)
        time.sleep(0.3)
        start = time.time_ns()
        time.sleep(1.5)
    marks = split_receipts(read(kafka_bootstrap, topics.receipts, lambda r: len(r) >= 8))[1]
    idle = [m for m in marks if m.applied_at_ns < start and m.ready]
    # Nothing was applied while idle, yet the instance kept saying where it stands.
    assert len(idle) >= 5, len(idle)
    assert all(m.offsets == {0: 1, 1: 1, 2: 1} for m in idle)
    assert all(m.period_s == 0.2 for m in marks)
    assert len({m.started_at_ns for m in marks}) == 1
