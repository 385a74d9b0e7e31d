"""Fixtures for the SSF receiver's tests: transmitter keys, settings, a real publisher, Redis.

Every test gets its own Redis key prefix and (through ``topics``) its own Kafka topics.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from kafka import KafkaConsumer, TopicPartition

from producer.ingress.ssf import SsfSettings, SsfStore, TransmitterConfig
from producer.ingress.ssf.testing import TransmitterKey
from producer.publisher import RevocationPublisher
from schemas import Envelope, KeySet, SigningKey, TopicNames, decode

ISSUER = "https://idp.example.com/tenant-1"
AUDIENCE = "https://revocast.example/ssf"
PUSH_TOKEN = "push-token-0123456789abcdef"


@pytest.fixture(scope="session")
def tx_keys() -> dict[str, TransmitterKey]:
    """One transmitter key of each accepted algorithm."""
    return {
        alg: TransmitterKey.generate(alg, kid=f"tx-{alg}") for alg in ("RS256", "ES256", "EdDSA")
    }


def transmitter(
    keys: list[TransmitterKey], name: str = "idp", **overrides: Any
) -> TransmitterConfig:
    fields: dict[str, Any] = {
        "name": name,
        "issuer": ISSUER,
        "audience": [AUDIENCE],
        "jwks": {"keys": [k.public_jwk() for k in keys]},
        "push_token": PUSH_TOKEN,
    }
    fields.update(overrides)
    return TransmitterConfig.model_validate(fields)


@pytest.fixture
def prefix() -> str:
    return f"test-ssf-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_settings(redis_url: str, prefix: str) -> Callable[..., SsfSettings]:
    def make(*configs: TransmitterConfig, **kw: Any) -> SsfSettings:
        return SsfSettings(transmitters=list(configs), redis_url=redis_url, key_prefix=prefix, **kw)

    return make


@pytest.fixture
def store(redis_url: str, prefix: str) -> Iterator[SsfStore]:
    s = SsfStore.from_url(redis_url, prefix)
    yield s
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()
    s.close()


@pytest.fixture
def publisher(
    kafka_bootstrap: str, topics: TopicNames, signing_key: SigningKey
) -> Iterator[RevocationPublisher]:
    pub = RevocationPublisher(kafka_bootstrap, topics, signing_key, delivery_timeout=10)
    yield pub
    pub.close()


def read_events(
    bootstrap: str, topics: TopicNames, keys: KeySet, *, expect: int, timeout: float = 10.0
) -> list[Envelope]:
    """Every revocation on the events topic (heartbeats skipped), waiting for ``expect``."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    try:
        parts = consumer.partitions_for_topic(topics.events) or set()
        consumer.assign([TopicPartition(topics.events, p) for p in sorted(parts)])
        consumer.seek_to_beginning()
        out: list[Envelope] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                out.extend(decode(r.value, keys) for r in records)
            if len(out) >= expect and (expect > 0 or time.monotonic() > deadline - timeout + 1.5):
                break
        return out
    finally:
        consumer.close()
