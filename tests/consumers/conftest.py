"""Fixtures for the consumers' tests: engines, a raw publisher, event factories, topic readers.

Events are published the way the producer side does it (signed JWS, key = subject
id) but with plain kafka-python: ``consumers`` must not depend on ``producer``.

A test that takes the ``engine`` fixture runs once per consumer engine
(:data:`consumers.engines.ENGINES`); the confluent engine needs ``revocast[fast]``,
which the test extra installs: a missing library fails the test, it never skips.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from consumers import RevocationConsumer, RevocationState
from consumers.engines import ENGINES
from schemas import (
    ClaimsChanged,
    CredentialKind,
    CredentialRotated,
    Envelope,
    Heartbeat,
    KeySet,
    RevocationEvent,
    SessionRevoked,
    SigningKey,
    Subject,
    SubjectKind,
    SubjectOffboarded,
    TokenRevoked,
    TopicNames,
    Watermark,
    encode,
)
from schemas.receipts import Receipt

PARTITIONS = 3


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each consumer engine in turn (the test runs once per engine)."""
    return str(request.param)


ALL_ENGINES: tuple[str, ...] = (*ENGINES, "faust")
"""Every engine, faust included (its own driver, :mod:`consumers.engines.faust`)."""


def make_consumer(
    engine: str,
    bootstrap: str,
    topics: TopicNames,
    service: str,
    instance: str,
    keys: KeySet | None,
    **kwargs: Any,
) -> Any:
    """A consumer on ``engine`` with :class:`RevocationConsumer`'s public API and defaults
    (watermarks, no per-event receipts): a ``RevocationConsumer``, or the faust engine's driver,
    which runs a faust worker in its own thread and event loop."""
    if engine == "faust":
        from consumers.engines.faust import FaustRevocationConsumer

        return FaustRevocationConsumer(bootstrap, topics, service, instance, keys, **kwargs)
    return RevocationConsumer(bootstrap, topics, service, instance, keys, engine=engine, **kwargs)


def split_receipts(records: list[Any]) -> tuple[list[Receipt], list[Watermark]]:
    """Receipts-topic records as (per-event receipts, watermarks), unverified."""
    receipts, marks = [], []
    for record in records:
        value: bytes = record.value
        signed = value.count(b".") == 2 and not value.lstrip().startswith(b"{")
        if signed or b'"type":"watermark"' in value:
            marks.append(Watermark.from_bytes(value))
        else:
            receipts.append(Receipt.from_bytes(value))
    return receipts, marks


class Publisher:
    """Signs and publishes envelopes (or raw bytes) to the events topic."""

    def __init__(self, bootstrap: str, topics: TopicNames, signer: SigningKey) -> None:
        self.topics = topics
        self.signer = signer
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)

    def send(
        self,
        envelope: Envelope,
        *,
        signer: SigningKey | bool | None = True,
        partition: int | None = None,
    ) -> Envelope:
        key = signer if isinstance(signer, SigningKey) else (self.signer if signer else None)
        envelope = envelope.restamped()
        self.producer.send(
            self.topics.events,
            key=envelope.partition_key,
            value=encode(envelope, key),
            partition=partition,
        )
        return envelope

    def send_raw(
        self,
        value: bytes | None,
        *,
        key: bytes | None = b"raw",
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        self.producer.send(
            self.topics.events, key=key, value=value, headers=headers, partition=partition
        )

    def heartbeats(self, partitions: int = PARTITIONS) -> None:
        for p in range(partitions):
            env = Envelope.wrap(Heartbeat(partition=p, emitter="tests"), issuer="tests")
            self.send(env, partition=p)

    def flush(self) -> None:
        self.producer.flush(timeout=10)

    def close(self) -> None:
        self.producer.close(timeout=5)


@pytest.fixture
def publisher(
    kafka_bootstrap: str, topics: TopicNames, signing_key: SigningKey
) -> Iterator[Publisher]:
    pub = Publisher(kafka_bootstrap, topics, signing_key)
    yield pub
    pub.close()


def _expiry() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


def make_event(i: int, subjects: int = 20) -> RevocationEvent:
    """The i-th event of a mixed stream over ``subjects`` subjects (all five types)."""
    subject = Subject(id=f"subject-{i % subjects}", kind=list(SubjectKind)[i % 3])
    past = datetime.now(UTC) - timedelta(seconds=1)
    kind = i % 5
    if kind == 0:
        return SessionRevoked(subject=subject, session_id=f"session-{i}", expires_at=_expiry())
    if kind == 1:
        return TokenRevoked(subject=subject, jti=f"jti-{i}", expires_at=_expiry())
    if kind == 2:
        return SubjectOffboarded(subject=subject, not_before=past, expires_at=_expiry())
    if kind == 3:
        return ClaimsChanged(
            subject=subject, changed_at=past, claims=("roles",), expires_at=_expiry()
        )
    return CredentialRotated(
        subject=subject,
        credential_id=f"cred-{i}",
        credential_kind=(CredentialKind.SIGNING_KEY, CredentialKind.CLIENT)[i % 2],
        not_before=past,
        expires_at=_expiry(),
    )


@pytest.fixture
def events() -> Callable[[int, int], list[Envelope]]:
    counter = itertools.count()

    def build(n: int, subjects: int = 20) -> list[Envelope]:
        return [
            Envelope.wrap(make_event(next(counter), subjects), issuer="tests") for _ in range(n)
        ]

    return build


def state_has(state: RevocationState, envelope: Envelope) -> bool:
    """Whether ``state`` holds the fact ``envelope`` states."""
    ev = envelope.event
    far_past = {"iat": 0}
    if isinstance(ev, SessionRevoked):
        return not state.check({"sid": ev.session_id}).allowed
    if isinstance(ev, TokenRevoked):
        return not state.check({"jti": ev.jti}).allowed
    if isinstance(ev, SubjectOffboarded):
        return state.check({"sub": ev.subject.id, **far_past}).rule == "subject_offboarded"
    if isinstance(ev, ClaimsChanged):
        # an offboarding of the same subject would win; ask with a token that only meets claims
        snap = state.snapshot()
        return ev.subject.id in snap["claims"]
    if isinstance(ev, CredentialRotated):
        return ev.credential_id in state.snapshot()["credentials"][ev.credential_kind.value]
    raise AssertionError(f"not a revocation: {ev!r}")


@pytest.fixture
def has_fact() -> Callable[[RevocationState, Envelope], bool]:
    return state_has


def read_topic(
    bootstrap: str,
    topic: str,
    until: Callable[[list[Any]], bool],
    timeout: float = 30.0,
    partitions: int = PARTITIONS,
) -> list[Any]:
    """Every record of ``topic`` from the beginning, until ``until(records)`` or timeout."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest",
    )  # fmt: skip
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        consumer.seek_to_beginning()
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            if until(records):
                break
        return records
    finally:
        consumer.close(autocommit=False)


@pytest.fixture
def read() -> Callable[..., list[Any]]:
    return read_topic


@pytest.fixture
def registry() -> CollectorRegistry:
    """A private metrics registry per test (no clashes between consumers)."""
    return CollectorRegistry()


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture
def until() -> Callable[..., bool]:
    return wait_until
