"""Delegation rules for every actor of an ``act`` chain, and tenants, in the in-process view."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers import RevocationState, Rule, Verdict
from schemas import (
    ClaimsChanged,
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

NOW = time.time()
LATER = datetime.now(UTC) + timedelta(hours=1)
BEFORE = int(NOW) - 60  # a token issued a minute ago


def _subject(ident: str, tenant: str | None = None) -> Subject:
    return Subject(id=ident, kind=SubjectKind.HUMAN, tenant=tenant)


def _apply(state: RevocationState, event: RevocationEvent) -> None:
    state.apply(Envelope.wrap(event, issuer="tests"))


def _rotate_client(client: str, tenant: str | None = None) -> CredentialRotated:
    return CredentialRotated(
        subject=_subject("iam", tenant),
        credential_id=client,
        credential_kind=CredentialKind.CLIENT,
        not_before=datetime.now(UTC),
        expires_at=LATER,
    )


def _offboard(ident: str, tenant: str | None = None) -> SubjectOffboarded:
    return SubjectOffboarded(
        subject=_subject(ident, tenant), not_before=datetime.now(UTC), expires_at=LATER
    )


def _claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "alice", "iat": BEFORE, **extra}


# ----------------------------------------------------------------- act chain (item 12)


@pytest.mark.parametrize(
    "act",
    [
        {"sub": "agent-7"},
        {"client_id": "agent-7"},
        {"sub": "planner", "act": {"sub": "x", "act": {"client_id": "agent-7"}}},
    ],
)
def test_a_rotated_client_credential_is_enforced_for_every_actor(act: dict[str, Any]) -> None:
    state = RevocationState()
    _apply(state, _rotate_client("agent-7"))
    decision = state.check(_claims(act=act))
    assert decision.verdict is Verdict.REVOKED
    assert decision.rule is Rule.CREDENTIAL_ROTATED
    assert "agent-7" in decision.detail


def test_a_rotated_client_credential_spares_tokens_issued_after_it() -> None:
    state = RevocationState()
    _apply(state, _rotate_client("agent-7"))
    assert state.check(_claims(iat=int(time.time()) + 5, act={"sub": "agent-7"})).allowed


def test_an_offboarded_actor_is_enforced_without_any_other_subject_offboarded() -> None:
    # the walk must not be skipped because no *subject* rule exists (only a client rotation)
    state = RevocationState()
    _apply(state, _rotate_client("c-1"))
    assert state.check(_claims(act={"act": {"client_id": "c-1"}})).rule is Rule.CREDENTIAL_ROTATED


def test_every_party_is_checked_against_both_rules() -> None:
    state = RevocationState()
    _apply(state, _offboard("gateway"))
    for claims in (
        _claims(azp="gateway"),
        _claims(client_id="gateway"),
        _claims(act={"sub": "gateway"}),
        _claims(act={"client_id": "gateway"}),
    ):
        assert state.check(claims).rule is Rule.DELEGATION_REVOKED, claims


# ----------------------------------------------------------------------- tenants (item 13)


def test_offboarding_alice_at_acme_does_not_reject_alice_at_globex() -> None:
    state = RevocationState()
    _apply(state, _offboard("alice", "acme"))
    acme = state.check(_claims(tid="acme"))
    assert acme.rule is Rule.SUBJECT_OFFBOARDED
    assert "acme" in acme.detail
    assert state.check(_claims(tid="globex")).allowed


def test_a_token_without_a_tenant_meets_every_tenants_revocations() -> None:
    state = RevocationState()
    _apply(state, _offboard("alice", "acme"))
    assert state.check(_claims()).rule is Rule.SUBJECT_OFFBOARDED
    assert state.check(_claims(tid=["acme"])).rule is Rule.SUBJECT_OFFBOARDED  # not a tenant


def test_an_event_without_a_tenant_applies_to_all_tenants() -> None:
    state = RevocationState()
    _apply(state, _offboard("alice"))
    for tid in ("acme", "globex", None):
        claims = _claims(tid=tid) if tid else _claims()
        assert state.check(claims).rule is Rule.SUBJECT_OFFBOARDED


def test_the_tenant_claim_is_configurable() -> None:
    state = RevocationState()
    _apply(state, _offboard("alice", "acme"))
    assert state.check(_claims(tenant="globex"), tenant_claim="tenant").allowed
    assert state.check(_claims(tenant="acme"), tenant_claim="tenant").rule is not None
    # with the default claim (tid) that token names no tenant: fail closed
    assert state.check(_claims(tenant="globex")).rule is Rule.SUBJECT_OFFBOARDED


@pytest.mark.parametrize(
    ("event", "claims"),
    [
        (
            SessionRevoked(subject=_subject("alice", "acme"), session_id="s-1", expires_at=LATER),
            {"sid": "s-1"},
        ),
        (
            TokenRevoked(subject=_subject("alice", "acme"), jti="j-1", expires_at=LATER),
            {"jti": "j-1"},
        ),
        (
            ClaimsChanged(
                subject=_subject("alice", "acme"), changed_at=datetime.now(UTC), expires_at=LATER
            ),
            {},
        ),
        (_rotate_client("app-1", "acme"), {"azp": "app-1"}),
        (_offboard("agent-7", "acme"), {"act": {"sub": "agent-7"}}),
    ],
)
def test_every_kind_of_fact_is_scoped_to_its_tenant(
    event: RevocationEvent, claims: dict[str, Any]
) -> None:
    state = RevocationState()
    _apply(state, event)
    assert not state.check(_claims(tid="acme", **claims)).allowed
    assert state.check(_claims(tid="globex", **claims)).allowed


def test_an_actor_of_another_tenant_is_judged_in_its_own_tenant() -> None:
    state = RevocationState()
    _apply(state, _offboard("agent-7", "globex"))
    cross = _claims(tid="acme", act={"sub": "agent-7", "tid": "globex"})
    assert state.check(cross).rule is Rule.DELEGATION_REVOKED
    assert state.check(_claims(tid="acme", act={"sub": "agent-7", "tid": "acme"})).allowed


def test_tenant_facts_survive_a_snapshot_round_trip() -> None:
    state = RevocationState()
    _apply(state, _offboard("alice", "acme"))
    _apply(state, _offboard("bob"))
    _apply(state, _rotate_client("app:1", "ac:me"))
    copy = RevocationState.from_snapshot(json.loads(json.dumps(state.snapshot())))
    assert copy == state
    assert copy.check(_claims(tid="globex")).allowed
    assert not copy.check(_claims(tid="acme")).allowed
    assert not copy.check(_claims(tid="ac:me", azp="app:1")).allowed
    assert copy.check(_claims(tid="ac", azp="app:1")).allowed


_tenants = st.sampled_from([None, "acme", "globex"])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["alice", "bob"]), _tenants, st.integers(0, 100)), max_size=8
    ),
    st.randoms(use_true_random=False),
)
def test_tenant_facts_join_in_any_order(facts: list[tuple[str, str | None, int]], rnd: Any) -> None:
    base = datetime.now(UTC)
    events = [
        SubjectOffboarded(
            subject=_subject(ident, tenant),
            not_before=base - timedelta(seconds=offset),
            expires_at=LATER + timedelta(seconds=offset),
        )
        for ident, tenant, offset in facts
    ]
    one, other, merged = RevocationState(), RevocationState(), RevocationState()
    for ev in events:
        _apply(one, ev)
    shuffled = list(events)
    rnd.shuffle(shuffled)
    for ev in shuffled + shuffled[:2]:
        _apply(other, ev)
    assert one == other
    half = len(events) // 2
    for ev in events[:half]:
        _apply(merged, ev)
    rest = RevocationState()
    for ev in events[half:]:
        _apply(rest, ev)
    merged.merge(rest)
    assert merged == one


def test_the_verifier_reads_the_configured_tenant_claim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import jwt as pyjwt

    from consumers import ConsumerSettings, RevokedTokenError, Verifier
    from consumers.testing import AlwaysFresh

    monkeypatch.setenv("REVOCAST_TENANT_CLAIM", "tenant")
    claim = ConsumerSettings(service="orders").tenant_claim
    assert claim == "tenant"
    state = RevocationState()
    _apply(state, _offboard("alice", "acme"))
    secret = "s" * 32
    verifier = Verifier(
        secret, algorithms=["HS256"], state=state, freshness=AlwaysFresh(), tenant_claim=claim
    )

    def token(tenant: str) -> str:
        now = int(time.time())
        claims = {"sub": "alice", "iat": now - 60, "exp": now + 300, "tenant": tenant}
        return pyjwt.encode(claims, secret, algorithm="HS256")

    assert verifier.verify(token("globex")).subject == "alice"
    with pytest.raises(RevokedTokenError, match="acme"):
        verifier.verify(token("acme"))


def test_the_in_memory_publisher_scopes_facts_to_a_tenant() -> None:
    from consumers.testing import InMemoryRevocations

    revocations = InMemoryRevocations()
    revocations.offboard("alice", tenant="acme")
    assert not revocations.state.check({"sub": "alice", "iat": 0, "tid": "acme"}).allowed
    assert revocations.state.check({"sub": "alice", "iat": 0, "tid": "globex"}).allowed
