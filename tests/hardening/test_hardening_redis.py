"""Redis keys: unambiguous for any service name or id, and scoped to tenants. Real Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from consumers import RedisRevocationStore, RedisSnapshotStore, RevocationState, Rule
from consumers.redis_store import connect
from schemas import (
    CredentialKind,
    CredentialRotated,
    Envelope,
    RevocationEvent,
    SessionRevoked,
    Subject,
    SubjectKind,
    SubjectOffboarded,
    TokenRevoked,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

LATER = datetime.now(UTC) + timedelta(hours=1)
IAT = int(time.time()) - 60


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = connect(redis_url)
    yield c
    c.close()


@pytest.fixture
def prefix() -> str:
    return f"hardening-{uuid.uuid4().hex[:8]}"


def _env(event: RevocationEvent) -> Envelope:
    return Envelope.wrap(event, issuer="tests")


def _who(ident: str = "alice", tenant: str | None = None) -> Subject:
    return Subject(id=ident, kind=SubjectKind.HUMAN, tenant=tenant)


def test_a_service_name_with_a_colon_cannot_collide(client: redis.Redis, prefix: str) -> None:
    # "orders" + session "j:x" and "orders:s" + token "x" were the same key
    orders = RedisRevocationStore(client, "orders", prefix=prefix)
    orders_s = RedisRevocationStore(client, "orders:s", prefix=prefix)
    orders.apply(_env(SessionRevoked(subject=_who(), session_id="j:x", expires_at=LATER)))
    assert orders.check({"sub": "alice", "sid": "j:x", "iat": IAT}).rule is Rule.SESSION_REVOKED
    assert orders_s.check({"sub": "alice", "jti": "x", "iat": IAT}).allowed
    assert orders.key("sessions", "j:x") != orders_s.key("tokens", "x")


def test_a_scan_of_one_service_does_not_read_another(client: redis.Redis, prefix: str) -> None:
    orders = RedisRevocationStore(client, "orders", prefix=prefix)
    other = RedisRevocationStore(client, "orders:j", prefix=prefix)
    other.apply(_env(TokenRevoked(subject=_who(), jti="t-1", expires_at=LATER)))
    orders.apply(_env(TokenRevoked(subject=_who(), jti="t:2*", expires_at=LATER)))
    state = RevocationState()
    assert orders.load_into(state) == 1
    assert state.check({"jti": "t:2*"}).rule is Rule.TOKEN_REVOKED
    assert state.check({"jti": "j:t-1"}).allowed
    assert state.check({"jti": "t-1"}).allowed


def test_snapshot_keys_are_unambiguous(client: redis.Redis, prefix: str) -> None:
    a = RedisSnapshotStore(client, "a", prefix=prefix)
    b = RedisSnapshotStore(client, "a:b", prefix=prefix)
    assert a.key("b:t") != b.key("t")


def test_tenants_in_the_shared_view(client: redis.Redis, prefix: str) -> None:
    store = RedisRevocationStore(client, "orders", prefix=prefix)
    now = datetime.now(UTC)
    store.apply(
        _env(SubjectOffboarded(subject=_who("alice", "acme"), not_before=now, expires_at=LATER))
    )
    store.apply(
        _env(
            CredentialRotated(
                subject=_who("iam", "ac:me"),
                credential_id="app-1",
                credential_kind=CredentialKind.CLIENT,
                not_before=now,
                expires_at=LATER,
            )
        )
    )
    alice = {"sub": "alice", "iat": IAT}
    assert store.check({**alice, "tid": "acme"}).rule is Rule.SUBJECT_OFFBOARDED
    assert store.check({**alice, "tid": "globex"}).allowed
    assert store.check(alice).rule is Rule.SUBJECT_OFFBOARDED  # no tenant: fail closed
    assert store.check({**alice, "tenant": "globex"}, tenant_claim="tenant").allowed
    bob = {"sub": "bob", "iat": IAT, "act": {"client_id": "app-1"}}
    assert store.check({**bob, "tid": "ac:me"}).rule is Rule.CREDENTIAL_ROTATED
    assert store.check({**bob, "tid": "ac"}).allowed

    state = RevocationState()
    assert store.load_into(state) == 2
    mirror = RevocationState()
    mirror.apply(
        _env(SubjectOffboarded(subject=_who("alice", "acme"), not_before=now, expires_at=LATER))
    )
    assert state.check({**alice, "tid": "globex"}).allowed
    assert state.check({**alice, "tid": "acme"}).rule is Rule.SUBJECT_OFFBOARDED
    assert state.check(alice).rule is Rule.SUBJECT_OFFBOARDED
    assert state.check({**bob, "tid": "ac:me"}).rule is Rule.CREDENTIAL_ROTATED
