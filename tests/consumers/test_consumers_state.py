"""RevocationState: every rule, the join laws, expiry, snapshots. No broker."""

from __future__ import annotations

import gc
import json
import random
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers import ALLOW, Decision, RevocationState, Rule, SnapshotError, Verdict
from consumers.testing import InMemoryRevocations
from schemas import (
    ClaimsChanged,
    CredentialKind,
    CredentialRotated,
    Envelope,
    Heartbeat,
    SessionRevoked,
    Subject,
    SubjectKind,
    SubjectOffboarded,
    TokenRevoked,
)

NOW = time.time()
HOUR = 3600.0


@pytest.fixture
def rev() -> InMemoryRevocations:
    return InMemoryRevocations()


def iat(offset: float = 0.0) -> int:
    return int(time.time() + offset)


# ------------------------------------------------------------------ rules


def test_miss_is_the_shared_allow(rev: InMemoryRevocations) -> None:
    rev.revoke_session("s-1")
    decision = rev.state.check({"sub": "u", "sid": "s-2", "jti": "j", "iat": iat()})
    assert decision is ALLOW
    assert decision.allowed
    assert decision.verdict is Verdict.ALLOW
    assert decision.rule is None


def test_session_revoked(rev: InMemoryRevocations) -> None:
    rev.revoke_session("s-1", subject="u-1")
    d = rev.state.check({"sub": "u-1", "sid": "s-1", "iat": iat()})
    assert (d.verdict, d.rule) == (Verdict.REVOKED, Rule.SESSION_REVOKED)
    assert "s-1" in d.detail
    assert not d.allowed
    assert rev.state.is_session_revoked("s-1")
    assert not rev.state.is_session_revoked("s-2")


def test_token_revoked(rev: InMemoryRevocations) -> None:
    rev.revoke_token("jti-9")
    d = rev.state.check({"sub": "u-1", "jti": "jti-9", "iat": iat()})
    assert (d.verdict, d.rule) == (Verdict.REVOKED, Rule.TOKEN_REVOKED)
    assert rev.state.check({"sub": "u-1", "jti": "jti-8", "iat": iat()}).allowed


def test_subject_offboarded_only_before_not_before(rev: InMemoryRevocations) -> None:
    cutoff = time.time()
    rev.offboard("svc-7", kind="service_account", not_before=cutoff)
    old = rev.state.check({"sub": "svc-7", "iat": int(cutoff) - 10})
    assert (old.verdict, old.rule) == (Verdict.REVOKED, Rule.SUBJECT_OFFBOARDED)
    assert old.since == pytest.approx(cutoff)
    assert rev.state.check({"sub": "svc-7", "iat": int(cutoff) + 2}).allowed


def test_offboarded_subject_without_iat_fails_closed(rev: InMemoryRevocations) -> None:
    rev.offboard("u-1")
    d = rev.state.check({"sub": "u-1"})
    assert d.rule is Rule.SUBJECT_OFFBOARDED


def test_signing_key_rotated(rev: InMemoryRevocations) -> None:
    cutoff = time.time()
    rev.rotate_credential("kid-old", credential_kind=CredentialKind.SIGNING_KEY, not_before=cutoff)
    claims = {"sub": "u-1", "iat": int(cutoff) - 5}
    d = rev.state.check(claims, {"kid": "kid-old", "alg": "ES256"})
    assert (d.verdict, d.rule) == (Verdict.REVOKED, Rule.CREDENTIAL_ROTATED)
    assert rev.state.check(claims, {"kid": "kid-new"}).allowed
    assert rev.state.check({"sub": "u-1", "iat": int(cutoff) + 2}, {"kid": "kid-old"}).allowed
    # The kid lives in the header, never in the claims.
    assert rev.state.check({**claims, "kid": "kid-old"}).allowed


@pytest.mark.parametrize("claim", ["azp", "client_id"])
def test_client_credential_rotated(rev: InMemoryRevocations, claim: str) -> None:
    cutoff = time.time()
    rev.rotate_credential("client-a", credential_kind=CredentialKind.CLIENT, not_before=cutoff)
    d = rev.state.check({"sub": "u-1", claim: "client-a", "iat": int(cutoff) - 1})
    assert (d.verdict, d.rule) == (Verdict.REVOKED, Rule.CREDENTIAL_ROTATED)
    assert rev.state.check({"sub": "u-1", claim: "client-a", "iat": int(cutoff) + 2}).allowed


@pytest.mark.parametrize("claim", ["azp", "client_id"])
def test_offboarded_client_revokes_delegated_tokens(rev: InMemoryRevocations, claim: str) -> None:
    rev.offboard("agent-1", kind="ai_agent")
    d = rev.state.check({"sub": "user-1", claim: "agent-1", "iat": iat(-60)})
    assert (d.verdict, d.rule) == (Verdict.REVOKED, Rule.DELEGATION_REVOKED)


def test_ai_agent_acting_for_user_loses_access_when_either_is_revoked() -> None:
    token = {"sub": "alice", "act": {"sub": "agent-42"}, "iat": iat(-60)}
    user_gone = InMemoryRevocations()
    user_gone.offboard("alice")
    assert user_gone.state.check(token).rule is Rule.SUBJECT_OFFBOARDED
    agent_gone = InMemoryRevocations()
    agent_gone.offboard("agent-42", kind="ai_agent")
    assert agent_gone.state.check(token).rule is Rule.DELEGATION_REVOKED
    bystander = InMemoryRevocations()
    bystander.offboard("bob")
    assert bystander.state.check(token).allowed


def test_nested_act_chain_is_walked(rev: InMemoryRevocations) -> None:
    rev.offboard("orchestrator", kind="ai_agent")
    token: dict[str, Any] = {
        "sub": "alice",
        "iat": iat(-10),
        "act": {"sub": "tool-agent", "act": {"sub": "planner", "act": {"sub": "orchestrator"}}},
    }
    d = rev.state.check(token)
    assert d.rule is Rule.DELEGATION_REVOKED
    assert "level 3" in d.detail
    token["act"]["act"]["act"] = {"sub": "someone-else"}
    assert rev.state.check(token).allowed


def test_act_client_id_is_checked(rev: InMemoryRevocations) -> None:
    rev.offboard("agent-client", kind="ai_agent")
    token = {"sub": "alice", "iat": iat(-10), "act": {"sub": "x", "client_id": "agent-client"}}
    assert rev.state.check(token).rule is Rule.DELEGATION_REVOKED


def test_delegation_respects_not_before(rev: InMemoryRevocations) -> None:
    cutoff = time.time()
    rev.offboard("agent-1", kind="ai_agent", not_before=cutoff)
    token = {"sub": "alice", "act": {"sub": "agent-1"}, "iat": int(cutoff) + 2}
    assert rev.state.check(token).allowed
    token["iat"] = int(cutoff) - 2
    assert rev.state.check(token).rule is Rule.DELEGATION_REVOKED


def test_too_deep_act_chain_fails_closed(rev: InMemoryRevocations) -> None:
    act: dict[str, object] = {"sub": "leaf"}
    for i in range(40):
        act = {"sub": f"a{i}", "act": act}
    token = {"sub": "alice", "iat": iat(), "act": act}
    assert rev.state.check(token).allowed  # nothing offboarded: no walk at all
    rev.offboard("unrelated")
    assert rev.state.check(token).rule is Rule.DELEGATION_REVOKED


def test_claims_changed_is_stale_not_revoked(rev: InMemoryRevocations) -> None:
    changed = time.time()
    rev.change_claims("u-1", changed_at=changed, claims=("roles",))
    d = rev.state.check({"sub": "u-1", "iat": int(changed) - 30})
    assert (d.verdict, d.rule) == (Verdict.STALE_CLAIMS, Rule.CLAIMS_CHANGED)
    assert d.since == pytest.approx(changed)
    assert rev.state.check({"sub": "u-1", "iat": int(changed) + 2}).allowed
    assert rev.state.check({"sub": "u-2", "iat": int(changed) - 30}).allowed


def test_revocation_wins_over_stale_claims(rev: InMemoryRevocations) -> None:
    rev.change_claims("u-1")
    rev.revoke_session("s-1", subject="u-1")
    assert rev.state.check({"sub": "u-1", "sid": "s-1", "iat": iat(-5)}).rule is (
        Rule.SESSION_REVOKED
    )


@pytest.mark.parametrize(
    "claims",
    [{"sid": ["a", "list"]}, {"jti": {"a": 1}}, {"sub": "u-1", "iat": "yesterday"}],
)
def test_malformed_claims_fail_closed(rev: InMemoryRevocations, claims: dict[str, object]) -> None:
    rev.offboard("u-1")
    d = rev.state.check(claims)
    assert (d.verdict, d.rule) == (Verdict.REVOKED, Rule.MALFORMED_CLAIMS)


def test_decision_is_immutable() -> None:
    d = Decision(Verdict.REVOKED, Rule.TOKEN_REVOKED, "x")
    with pytest.raises(AttributeError):
        d.verdict = Verdict.ALLOW  # type: ignore[misc]
    assert not hasattr(d, "__dict__")


def test_heartbeats_change_nothing() -> None:
    state = RevocationState()
    hb = Envelope.wrap(Heartbeat(partition=0, emitter="hb"), issuer="iam")
    assert state.apply(hb) is False
    assert len(state) == 0


def test_apply_reports_change_only_when_the_state_grows(rev: InMemoryRevocations) -> None:
    env = rev.revoke_session("s-1")
    assert rev.state.apply(env) is False
    assert rev.state.apply(env.event) is False  # a bare event works too


def test_not_before_is_a_max_not_last_writer_wins() -> None:
    state = RevocationState()
    later, earlier = NOW + 100, NOW - 100
    subject = Subject(id="u-1", kind=SubjectKind.HUMAN)
    exp = datetime.now(UTC) + timedelta(hours=1)
    for nb in (later, earlier):
        state.apply(
            SubjectOffboarded(
                subject=subject, not_before=datetime.fromtimestamp(nb, UTC), expires_at=exp
            )
        )
    assert state.check({"sub": "u-1", "iat": NOW + 50}).rule is Rule.SUBJECT_OFFBOARDED


# ------------------------------------------------------------ join laws

_ids = st.sampled_from(["a", "b", "c", "d"])
_base = datetime(2099, 1, 1, tzinfo=UTC)
_times = st.integers(min_value=0, max_value=50).map(lambda s: _base + timedelta(seconds=s))
_exps = st.integers(min_value=3600, max_value=3700).map(lambda s: _base + timedelta(seconds=s))
_subjects = st.builds(Subject, id=_ids, kind=st.sampled_from(["human", "ai_agent"]))

_events = st.one_of(
    st.builds(SessionRevoked, subject=_subjects, session_id=_ids, expires_at=_exps),
    st.builds(TokenRevoked, subject=_subjects, jti=_ids, expires_at=_exps),
    st.builds(SubjectOffboarded, subject=_subjects, not_before=_times, expires_at=_exps),
    st.builds(
        ClaimsChanged, subject=_subjects, changed_at=_times, expires_at=_exps, claims=st.just(())
    ),
    st.builds(
        CredentialRotated,
        subject=_subjects,
        credential_id=_ids,
        credential_kind=st.sampled_from(list(CredentialKind)),
        not_before=_times,
        expires_at=_exps,
    ),
)


def _state_of(events: list[object], now: float) -> RevocationState:
    state = RevocationState()
    for event in events:
        state.apply(event, now=now)  # type: ignore[arg-type]
    return state


@settings(max_examples=200, deadline=None)
@given(events=st.lists(_events, max_size=30), seed=st.integers(), data=st.data())
def test_any_permutation_or_duplication_gives_the_same_state(
    events: list[object], seed: int, data: st.DataObject
) -> None:
    now = NOW
    reference = _state_of(events, now)
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)
    if events:
        extra = data.draw(st.lists(st.sampled_from(events), max_size=15))
        shuffled += extra
        random.Random(seed + 1).shuffle(shuffled)
    assert _state_of(shuffled, now) == reference
    assert _state_of(shuffled, now).snapshot() == reference.snapshot()


@settings(max_examples=100, deadline=None)
@given(left=st.lists(_events, max_size=15), right=st.lists(_events, max_size=15))
def test_merge_is_a_commutative_idempotent_join(left: list[object], right: list[object]) -> None:
    now = NOW
    a, b = _state_of(left, now), _state_of(right, now)
    ab = _state_of(left, now)
    ab.merge(b, now=now)
    ba = _state_of(right, now)
    ba.merge(a, now=now)
    assert ab == ba == _state_of(left + right, now)
    assert ab.merge(a, now=now) is False  # idempotent


@settings(max_examples=100, deadline=None)
@given(events=st.lists(_events, max_size=20))
def test_snapshot_round_trips_through_json(events: list[object]) -> None:
    state = _state_of(events, NOW)
    restored = RevocationState.from_snapshot(json.loads(json.dumps(state.snapshot())), now=NOW)
    assert restored == state


# ----------------------------------------------------------------- expiry


def _session(sid: str, expires_at: float) -> SessionRevoked:
    return SessionRevoked(
        subject=Subject(id="u", kind=SubjectKind.HUMAN),
        session_id=sid,
        expires_at=datetime.fromtimestamp(expires_at, UTC),
    )


def test_expired_entry_is_never_counted() -> None:
    state = RevocationState()
    state.apply(_session("s-1", NOW + 60), now=NOW)
    assert state.check({"sid": "s-1"}, now=NOW + 59).rule is Rule.SESSION_REVOKED
    assert state.check({"sid": "s-1"}, now=NOW + 60.001).allowed
    assert not state.is_session_revoked("s-1", now=NOW + 61)


def test_expire_drops_entries_and_keeps_live_ones() -> None:
    rev = InMemoryRevocations()
    state = rev.state
    for i in range(50):
        state.apply(_session(f"short-{i}", NOW + 10 + i * 0.1), now=NOW)
    state.apply(_session("long", NOW + 10_000), now=NOW)
    state.apply(
        SubjectOffboarded(
            subject=Subject(id="u", kind=SubjectKind.HUMAN),
            not_before=datetime.fromtimestamp(NOW, UTC),
            expires_at=datetime.fromtimestamp(NOW + 20, UTC),
        ),
        now=NOW,
    )
    assert len(state) == 52
    assert state.expire(now=NOW + 12.05) == 21  # 10.0, 10.1 ... 12.0
    assert state.expire(now=NOW + 30) > 0
    assert len(state) == 1
    assert state.counts()["sessions"] == 1
    assert state.is_session_revoked("long", now=NOW + 30)


def test_apply_sweeps_expired_entries_as_it_goes() -> None:
    state = RevocationState(granularity=1.0)
    for i in range(1000):
        state.apply(_session(f"s-{i}", NOW + 5), now=NOW)
    assert len(state) == 1000
    # Later applies reclaim the expired bucket a bounded amount at a time.
    for i in range(10):
        state.apply(_session(f"late-{i}", NOW + 1000), now=NOW + 10)
    assert len(state) == 10


def test_extending_an_entry_keeps_it_past_its_first_expiry() -> None:
    state = RevocationState()
    state.apply(_session("s-1", NOW + 5), now=NOW)
    state.apply(_session("s-1", NOW + 500), now=NOW)
    state.expire(now=NOW + 100)
    assert state.is_session_revoked("s-1", now=NOW + 100)
    state.expire(now=NOW + 501)
    assert len(state) == 0


def test_already_expired_events_are_not_stored() -> None:
    state = RevocationState()
    assert state.apply(_session("s-1", NOW - 1), now=NOW) is False
    assert len(state) == 0


def test_expired_entries_leave_memory() -> None:
    state = RevocationState()
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(20_000):
            state.add("sessions", f"session-{i:08d}", NOW + 30 + (i % 100) * 0.01, now=NOW)
        full, _ = tracemalloc.get_traced_memory()
        dropped = state.expire(now=NOW + 60)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert dropped == 20_000
    assert len(state) == 0
    grown = full - before
    assert grown > 20_000 * 50  # the entries really were there
    # What is left is the (empty) dicts' spare capacity, not the entries.
    assert after - before < grown * 0.35, (before, full, after)
    assert state.snapshot()["sessions"] == {}


# ---------------------------------------------------------------- snapshots


def test_snapshot_skips_expired_entries_on_restore() -> None:
    state = RevocationState()
    state.apply(_session("old", NOW + 10), now=NOW)
    state.apply(_session("new", NOW + 1000), now=NOW)
    restored = RevocationState.from_snapshot(state.snapshot(), now=NOW + 100)
    assert restored.counts()["sessions"] == 1


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"v": 2},
        {"v": 1, "sessions": []},
        {"v": 1, "subjects": {"u": "not-a-pair"}},
        {"v": 1, "credentials": {"kid": {"k": [1]}}},
        {"v": 1, "credentials": "nope"},
    ],
)
def test_from_snapshot_refuses_what_it_did_not_write(bad: dict[str, object]) -> None:
    with pytest.raises(SnapshotError):
        RevocationState.from_snapshot(bad)


def test_add_validates_kind_and_time() -> None:
    state = RevocationState()
    with pytest.raises(ValueError, match="unknown entry kind"):
        state.add("cookies", "x", NOW + 10)
    with pytest.raises(ValueError, match="need a time"):
        state.add("subjects", "x", NOW + 10)
    assert state.add("kid", "k1", NOW + 10, at=NOW, now=NOW)
    assert state.check({"sub": "x", "iat": NOW - 1}, {"kid": "k1"}, now=NOW).rule is (
        Rule.CREDENTIAL_ROTATED
    )


def test_repr_and_counts() -> None:
    rev = InMemoryRevocations()
    rev.revoke_session("s")
    rev.rotate_credential("c", credential_kind="client_id")
    assert rev.state.counts() == {
        "sessions": 1,
        "tokens": 0,
        "subjects": 0,
        "claims": 0,
        "kid": 0,
        "client_id": 1,
    }
    assert "sessions=1" in repr(rev.state)
    assert len(rev.published) == 2
