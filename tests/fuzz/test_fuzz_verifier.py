"""The JWT verifier under random tokens: a VerifiedToken or a documented TokenRejected, ever.

Random headers, payloads and signatures, and validly signed tokens around random claims
(which reach the revocation view with every type a JSON claim can have)."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers import RevocationState, TokenRejected, VerifiedToken, Verifier
from consumers.testing import AlwaysFresh
from schemas import (
    CredentialKind,
    CredentialRotated,
    Envelope,
    SessionRevoked,
    Subject,
    SubjectKind,
    SubjectOffboarded,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = ec.generate_private_key(ec.SECP256R1())
SECRET = "fuzz-secret-" * 4
_JWS = jwt.PyJWS()


def _state() -> RevocationState:
    """A view holding one fact of most kinds, with and without tenants."""
    state = RevocationState()
    later = datetime.now(UTC) + timedelta(hours=1)
    now = datetime.now(UTC)
    for tenant in (None, "acme"):
        who = Subject(id="alice", kind=SubjectKind.HUMAN, tenant=tenant)
        for event in (
            SessionRevoked(subject=who, session_id="s-1", expires_at=later),
            SubjectOffboarded(subject=who, not_before=now, expires_at=later),
            CredentialRotated(
                subject=who,
                credential_id="app",
                credential_kind=CredentialKind.CLIENT,
                not_before=now,
                expires_at=later,
            ),
        ):
            state.apply(Envelope.wrap(event, issuer="fuzz"))
    return state


STATE = _state()
VERIFIERS = [
    Verifier(KEY.public_key(), algorithms=["ES256"], state=STATE, freshness=AlwaysFresh()),
    Verifier(
        {"k1": KEY.public_key()},
        algorithms=["ES256", "EdDSA"],
        state=STATE,
        issuer="https://idp",
        audience="api",
    ),
    Verifier(
        SECRET,
        algorithms=["HS256"],
        state=STATE,
        freshness=AlwaysFresh(),
        tenant_claim="tenant",
        leeway=30,
    ),
]

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["alice", "s-1", "app", "acme", "k1"])
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)
_claim_names = st.sampled_from(
    [
        "sub",
        "sid",
        "jti",
        "iat",
        "exp",
        "nbf",
        "iss",
        "aud",
        "azp",
        "client_id",
        "act",
        "tid",
        "tenant",
        "scope",
    ]
)
_claims = st.dictionaries(_claim_names | st.text(max_size=6), _json, max_size=10)
_act = st.recursive(
    st.fixed_dictionaries({}, optional={"sub": _scalars, "client_id": _scalars, "tid": _scalars}),
    lambda inner: st.fixed_dictionaries({"act": inner}, optional={"sub": _scalars}),
    max_leaves=20,
)
_header = st.dictionaries(
    st.sampled_from(["alg", "kid", "typ", "crit", "b64", "jku"]) | st.text(max_size=5),
    _json | st.sampled_from(["ES256", "HS256", "none", "EdDSA", "RS256", "k1"]),
    max_size=5,
)


def _signed(body: dict[str, Any], key: Any, alg: str) -> str:
    """A validly signed token around ``body`` as is (jwt.encode would vet the claims)."""
    return _JWS.encode(json.dumps(body).encode(), key, algorithm=alg, headers={"kid": "k1"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _only_documented(token: Any, privileged: bool = False) -> None:
    for verifier in VERIFIERS:
        rejected: TokenRejected | None = None
        try:
            result = verifier.verify(token, privileged=privileged)
        except TokenRejected as exc:
            rejected = exc
        if rejected is None:
            assert isinstance(result, VerifiedToken)
            continue
        assert 400 <= rejected.status < 600
        assert rejected.reason
        rejected.www_authenticate("realm")  # the challenge must render for any reason


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=100).map(lambda b: b.decode("latin-1")))
def test_random_strings(token: str) -> None:
    _only_documented(token)


@FUZZ
@given(_header, _json | _claims, st.binary(max_size=80))
def test_random_header_payload_signature(header: Any, payload: Any, signature: bytes) -> None:
    parts = [_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()), _b64(signature)]
    _only_documented(".".join(parts))


@FUZZ
@given(_claims, _act, st.booleans(), st.booleans())
def test_validly_signed_random_claims(
    claims: dict[str, Any], act: dict[str, Any], with_act: bool, privileged: bool
) -> None:
    now = int(time.time())
    body = {"iat": now - 10, "exp": now + 300, **claims}
    if with_act:
        body["act"] = act
    for token in (_signed(body, KEY, "ES256"), _signed(body, SECRET, "HS256")):
        _only_documented(token, privileged)


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": 1e400},
        {"exp": float("nan")},
        {"iat": float("inf")},
        {"nbf": -1e400},
        {"exp": 10**400},
        {"iat": 10**30, "sub": "alice"},
        {"sub": ["alice"], "sid": {"x": 1}},
        {"act": {"act": {"act": {"sub": ["x"]}}}},
    ],
)
def test_hostile_numbers_and_types_are_rejected_or_allowed_never_raised(
    claims: dict[str, Any],
) -> None:
    now = int(time.time())
    body = {"iat": now - 10, "exp": now + 300, **claims}
    _only_documented(_signed(body, SECRET, "HS256"))
    _only_documented(_signed(body, KEY, "ES256"))
