"""Fixtures for the SCIM ingress: the real endpoint (uvicorn on 127.0.0.1, the serve-api app
with SCIM mounted), a SCIM client this project did not write (scim2-client over httpx2), a
fleet of real consumers reading the topic, and IdP-signed tokens to check against them.

Each test gets its own topics (``topics`` fixture) and its own Redis key prefix.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import jwt
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kafka import KafkaConsumer, TopicPartition
from scim2_client.engines.httpx2 import SyncSCIMClient

from consumers import RevocationConsumer, Verifier
from producer.ingress.scim import ScimClient, ScimSettings
from producer.ingress.scim.server import ScimEndpoint
from producer.settings import ProducerSettings
from schemas import Envelope, KeySet, SigningKey, TopicNames, decode_records

OKTA_TOKEN = "okta-scim-token-0123456789abcdef0123"
ENTRA_TOKEN = "entra-scim-token-0123456789abcdef012"
OKTA = ScimClient(name="okta", token=OKTA_TOKEN)  # externalId, human
ENTRA = ScimClient(
    name="entra",
    token=ENTRA_TOKEN,
    subject_attribute="userName",
    kind_attribute="userType",
    kind_map={"Agent": "ai_agent", "Service": "service_account"},
    tenant="contoso",
)
TESTER_TOKEN = "tester-scim-token-0123456789abcdef01"
TESTER = ScimClient(name="scim2-tester", token=TESTER_TOKEN, subject_attribute="id")
SERVICES = ("orders", "billing", "agents-gateway")
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


@pytest.fixture(autouse=True)
def no_revocast_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read REVOCAST_*: start every test from the documented defaults."""
    for name in list(ProducerSettings.model_fields) + list(ScimSettings.model_fields):
        monkeypatch.delenv(f"REVOCAST_{name.upper()}", raising=False)
        monkeypatch.delenv(f"REVOCAST_SCIM_{name.upper()}", raising=False)


def prefix_of(topics: TopicNames) -> str:
    return topics.events.removesuffix(".revocast.events")


@pytest.fixture
def scim_settings(redis_url: str) -> Iterator[ScimSettings]:
    prefix = f"t-scim-{uuid.uuid4().hex[:10]}"
    yield ScimSettings(
        clients=[OKTA, ENTRA, TESTER],
        redis_url=redis_url,
        key_prefix=prefix,
        max_body_bytes=64 * 1024,
        default_page_size=5,
        max_page_size=10,
    )
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def producer_settings(bootstrap: str, topics: TopicNames, **extra: Any) -> ProducerSettings:
    return ProducerSettings.load(
        bootstrap_servers=bootstrap,
        topic_prefix=prefix_of(topics),
        delivery_timeout=extra.pop("delivery_timeout", 10.0),
        connect_timeout=extra.pop("connect_timeout", 10.0),
        **extra,
    )


@pytest.fixture
def endpoint(
    kafka_bootstrap: str, topics: TopicNames, scim_settings: ScimSettings, signing_key: SigningKey
) -> Iterator[ScimEndpoint]:
    with ScimEndpoint(
        producer_settings(kafka_bootstrap, topics), scim_settings, signer=signing_key
    ) as running:
        yield running


def scim_client(endpoint: ScimEndpoint, token: str = OKTA_TOKEN) -> SyncSCIMClient:
    """scim2-client over httpx2, configured only from what the server publishes."""
    http = httpx2.Client(
        base_url=endpoint.scim_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    client = SyncSCIMClient(http)
    client.discover()
    return client


@pytest.fixture
def okta(endpoint: ScimEndpoint) -> Iterator[SyncSCIMClient]:
    client = scim_client(endpoint, OKTA_TOKEN)
    yield client
    client.client.close()


@pytest.fixture
def entra(endpoint: ScimEndpoint) -> Iterator[SyncSCIMClient]:
    client = scim_client(endpoint, ENTRA_TOKEN)
    yield client
    client.client.close()


@dataclass
class Applied:
    service: str
    envelope: Envelope
    applied_ns: int


@dataclass
class Fleet:
    """Real consumers of several services, and every event each one applied, with when."""

    consumers: list[RevocationConsumer]
    verifiers: dict[str, Verifier]
    applied: list[Applied] = field(default_factory=list)
    lock: threading.Condition = field(default_factory=threading.Condition)

    def record(self, service: str) -> Any:
        def on_applied(envelope: Envelope, applied_ns: int) -> None:
            with self.lock:
                self.applied.append(Applied(service, envelope, applied_ns))
                self.lock.notify_all()

        return on_applied

    def events_for(self, subject: str, type_: str | None = None) -> list[Applied]:
        with self.lock:
            return [
                a
                for a in self.applied
                if getattr(a.envelope.event, "subject", None) is not None
                and a.envelope.event.subject.id == subject  # type: ignore[union-attr]
                and (type_ is None or a.envelope.event.type == type_)
            ]

    def wait_everywhere(self, subject: str, type_: str, timeout: float = 60.0) -> list[Applied]:
        """One applied event of ``type_`` for ``subject`` per service (the first of each)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                firsts: dict[str, Applied] = {}
                for a in self.events_for(subject, type_):
                    firsts.setdefault(a.service, a)
                if len(firsts) == len(self.consumers):
                    return list(firsts.values())
                left = deadline - time.monotonic()
                assert left > 0, f"{type_} for {subject!r} applied by {sorted(firsts)} only"
                self.lock.wait(left)


@pytest.fixture
def fleet(
    kafka_bootstrap: str, topics: TopicNames, trusted_keys: KeySet, idp_key: Ed25519PrivateKey
) -> Iterator[Fleet]:
    fleet = Fleet(consumers=[], verifiers={})
    for service in SERVICES:
        consumer = RevocationConsumer(
            kafka_bootstrap,
            topics,
            service=service,
            instance=f"{service}-1",
            keys=trusted_keys,
            on_applied=fleet.record(service),
            publish_receipts=False,
            poll_interval=0.02,
        )
        fleet.consumers.append(consumer.start())
        fleet.verifiers[service] = Verifier(
            idp_key.public_key(), algorithms=["EdDSA"], state=consumer.state
        )
    try:
        for consumer in fleet.consumers:
            assert consumer.wait_ready(timeout=60), f"{consumer.service} not ready"
        yield fleet
    finally:
        for consumer in fleet.consumers:
            consumer.stop(timeout=5)


@pytest.fixture(scope="session")
def idp_key() -> Ed25519PrivateKey:
    """The IdP's token-signing key (tokens services verify; not the revocation key)."""
    return Ed25519PrivateKey.generate()


def mint(idp_key: Ed25519PrivateKey, sub: str, *, iat: float | None = None) -> str:
    issued = int(time.time() if iat is None else iat)
    return jwt.encode({"sub": sub, "iat": issued, "exp": issued + 3600}, idp_key, "EdDSA")


def read_events(bootstrap: str, topic: str, keys: KeySet) -> list[Envelope]:
    """Every event the topic holds, in partition order (a batch record holds several)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        ends = consumer.end_offsets(parts)
        consumer.seek_to_beginning()
        events: list[Envelope] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(p) < ends[p] for p in parts):
            assert time.monotonic() < deadline, f"{topic} not read to its end within 30 s"
            for part, records in consumer.poll(timeout_ms=200).items():
                for record in records:
                    if record.offset < ends[part]:
                        events.extend(decode_records(record.value, keys))
        return events
    finally:
        consumer.close()


@pytest.fixture
def published(
    kafka_bootstrap: str, topics: TopicNames, trusted_keys: KeySet
) -> Callable[[], list[Envelope]]:
    """``published()``: the events on this test's topic so far (records may be batches)."""
    return lambda: read_events(kafka_bootstrap, topics.events, trusted_keys)


def user_body(user_name: str, external_id: str | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [USER_SCHEMA], "userName": user_name, "active": True}
    if external_id is not None:
        body["externalId"] = external_id
    body.update(extra)
    return body


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}
