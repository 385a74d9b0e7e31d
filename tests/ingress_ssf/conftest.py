"""Fixtures for the SSF receiver's tests: transmitter keys, settings, a real publisher, Redis.

Every test gets its own Redis key prefix and (through ``topics``) its own Kafka topics.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from producer.ingress.ssf import SsfSettings, SsfStore, TransmitterConfig
from producer.ingress.ssf.testing import TransmitterKey
from producer.publisher import RevocationPublisher
from schemas import Envelope, KeySet, SigningKey, TopicNames, decode
from tests.producer.producer_testkit import read_records

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


@pytest.fixture
def published(
    kafka_bootstrap: str, topics: TopicNames, trusted_keys: KeySet
) -> Callable[..., list[Envelope]]:
    """``published(expect=N)``: the revocations on this test's events topic."""

    def read(*, expect: int, timeout: float = 10.0) -> list[Envelope]:
        return read_events(kafka_bootstrap, topics, trusted_keys, expect=expect, timeout=timeout)

    return read


@dataclass
class SsfKit:
    """What most SSF tests need: transmitter keys, a settings factory (own Redis prefix),
    the Redis store, a real publisher on this test's topics, and a reader of those topics."""

    keys: dict[str, TransmitterKey]
    settings: Callable[..., SsfSettings]
    store: SsfStore
    publisher: RevocationPublisher
    published: Callable[..., list[Envelope]]


@pytest.fixture
def kit(
    tx_keys: dict[str, TransmitterKey],
    make_settings: Callable[..., SsfSettings],
    store: SsfStore,
    publisher: RevocationPublisher,
    published: Callable[..., list[Envelope]],
) -> SsfKit:
    return SsfKit(tx_keys, make_settings, store, publisher, published)


def read_events(
    bootstrap: str, topics: TopicNames, keys: KeySet, *, expect: int, timeout: float = 10.0
) -> list[Envelope]:
    """The revocations on the events topic, waiting for ``expect`` (``0``: waits the whole
    ``timeout`` for any, so "nothing was published" is checked, not assumed)."""
    records = read_records(bootstrap, topics.events, max(expect, 1), timeout)
    return [decode(r.value, keys) for r in records]
