"""Verifier: pyjwt checks, then the revocation view, then freshness. No broker."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from consumers import (
    FreshnessGuard,
    InvalidTokenError,
    MissingTokenError,
    RevokedTokenError,
    StaleClaimsError,
    StaleViewError,
    TokenRejected,
    Verifier,
    verify_request,
)
from consumers.testing import AlwaysFresh, InMemoryRevocations
from consumers.verifier import bearer_token
from schemas import ConfigError, RevocastError

ISS, AUD = "https://idp.example", "orders-api"


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def rev() -> InMemoryRevocations:
    return InMemoryRevocations()


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISS, "aud": AUD, "sub": "alice", "iat": now - 5, "exp": now + 300, **extra}


def token(key: Any, alg: str = "ES256", kid: str | None = "k1", **extra: Any) -> str:
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims(**extra), key, algorithm=alg, headers=headers)


@pytest.fixture
def verifier(ec_key: ec.EllipticCurvePrivateKey, rev: InMemoryRevocations) -> Verifier:
    return Verifier(
        ec_key.public_key(),
        algorithms=["ES256"],
        state=rev.state,
        freshness=AlwaysFresh(),
        issuer=ISS,
        audience=AUD,
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_valid_token_passes(verifier: Verifier, ec_key: ec.EllipticCurvePrivateKey) -> None:
    verified = verifier.verify(token(ec_key, sid="s-1"))
    assert verified.subject == "alice"
    assert verified.claims["sid"] == "s-1"
    assert verified.header["alg"] == "ES256"
    assert "token" not in {f for f in verified.__slots__}  # the raw token is not kept


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"exp": int(time.time()) - 60}, "expired"),
        ({"nbf": int(time.time()) + 600}, "not_yet_valid"),
        ({"iss": "https://evil.example"}, "bad_issuer"),
        ({"aud": "another-api"}, "bad_audience"),
    ],
)
def test_time_issuer_and_audience_are_checked(
    verifier: Verifier, ec_key: ec.EllipticCurvePrivateKey, extra: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidTokenError) as info:
        verifier.verify(token(ec_key, **extra))
    assert info.value.reason == reason
    assert info.value.status == 401


def test_leeway_accepts_slightly_expired(
    ec_key: ec.EllipticCurvePrivateKey, rev: InMemoryRevocations
) -> None:
    lenient = Verifier(
        ec_key.public_key(), algorithms=["ES256"], state=rev.state, issuer=ISS, audience=AUD,
        leeway=120,
    )  # fmt: skip
    assert lenient.verify(token(ec_key, exp=int(time.time()) - 60)).subject == "alice"


def test_missing_exp_is_refused(verifier: Verifier, ec_key: ec.EllipticCurvePrivateKey) -> None:
    body = claims()
    del body["exp"]
    with pytest.raises(InvalidTokenError) as info:
        verifier.verify(jwt.encode(body, ec_key, algorithm="ES256"))
    assert info.value.reason == "missing_claim"


def test_bad_signature(verifier: Verifier) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InvalidTokenError) as info:
        verifier.verify(token(other))
    assert info.value.reason == "bad_signature"


def test_alg_none_is_always_refused(verifier: Verifier) -> None:
    header = _b64(b'{"alg":"none","typ":"JWT"}')
    unsigned = f"{header}.{_b64(json.dumps(claims()).encode())}."
    with pytest.raises(InvalidTokenError) as info:
        verifier.verify(unsigned)
    assert info.value.reason == "alg_not_allowed"
    with pytest.raises(ConfigError, match="none"):
        Verifier(b"secret" * 6, algorithms=["HS256", "none"], state=InMemoryRevocations().state)


def test_hs256_signed_with_the_public_key_is_refused(
    rsa_key: rsa.RSAPrivateKey, rev: InMemoryRevocations
) -> None:
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The key-confusion attack: HMAC with the public key as the secret.
    header = _b64(b'{"alg":"HS256","typ":"JWT"}')
    signing_input = f"{header}.{_b64(json.dumps(claims()).encode())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{_b64(mac)}"
    # Even a verifier that (wrongly) lists HS256 next to RS256 for a keyset refuses it.
    keyset = Verifier({"k1": public_pem}, algorithms=["RS256", "HS256"], state=rev.state,
                      issuer=ISS, audience=AUD)  # fmt: skip
    with pytest.raises(InvalidTokenError) as info:
        keyset.verify(forged.replace(_b64(b'{"alg":"HS256","typ":"JWT"}'),
                                     _b64(b'{"alg":"HS256","typ":"JWT","kid":"k1"}')))  # fmt: skip
    assert info.value.reason == "alg_not_allowed"
    rsa_only = Verifier(public_pem, algorithms=["RS256"], state=rev.state, issuer=ISS, audience=AUD)
    with pytest.raises(InvalidTokenError) as info:
        rsa_only.verify(forged)
    assert info.value.reason == "alg_not_allowed"
    with pytest.raises(ConfigError, match="asymmetric"):
        Verifier(public_pem, algorithms=["RS256", "HS256"], state=rev.state)
    with pytest.raises(ConfigError, match="asymmetric"):
        Verifier(rsa_key.public_key(), algorithms=["HS512"], state=rev.state)


def test_symmetric_key_works_when_configured(rev: InMemoryRevocations) -> None:
    secret = b"a-long-enough-shared-secret-for-hs256!!"
    v = Verifier(secret, algorithms=["HS256"], state=rev.state, issuer=ISS, audience=AUD)
    assert v.verify(jwt.encode(claims(), secret, algorithm="HS256")).subject == "alice"


def test_key_set_by_kid(ec_key: ec.EllipticCurvePrivateKey, rev: InMemoryRevocations) -> None:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
    keyset = jwt.PyJWKSet.from_dict({"keys": [{**jwk, "kid": "k1", "alg": "ES256"}]})
    v = Verifier(keyset, algorithms=["ES256"], state=rev.state, issuer=ISS, audience=AUD)
    assert v.verify(token(ec_key, kid="k1")).subject == "alice"
    with pytest.raises(InvalidTokenError) as info:
        v.verify(token(ec_key, kid="k2"))
    assert info.value.reason == "unknown_key"
    with pytest.raises(InvalidTokenError):
        v.verify(token(ec_key, kid=None))


@pytest.mark.parametrize("bad", ["", "abc", "a.b", "a.b.c", "😀.x.y"])
def test_malformed_tokens(verifier: Verifier, bad: str) -> None:
    with pytest.raises(InvalidTokenError) as info:
        verifier.verify(bad)
    assert info.value.reason in ("malformed", "alg_not_allowed")


def test_unknown_algorithm_is_a_config_error(rev: InMemoryRevocations) -> None:
    with pytest.raises(ConfigError, match="unknown JWT algorithms"):
        Verifier(b"x" * 32, algorithms=["HS999"], state=rev.state)
    with pytest.raises(ConfigError, match="at least one"):
        Verifier(b"x" * 32, algorithms=[], state=rev.state)


# ------------------------------------------------------- revocation rules


def test_revoked_session(verifier: Verifier, ec_key: Any, rev: InMemoryRevocations) -> None:
    rev.revoke_session("s-1", subject="alice")
    with pytest.raises(RevokedTokenError) as info:
        verifier.verify(token(ec_key, sid="s-1"))
    assert info.value.reason == "session_revoked"
    assert info.value.status == 401
    assert info.value.error == "invalid_token"
    assert verifier.verify(token(ec_key, sid="s-2")).subject == "alice"


def test_revoked_signing_key_uses_the_header_kid(
    verifier: Verifier, ec_key: Any, rev: InMemoryRevocations
) -> None:
    rev.rotate_credential("k1", not_before=time.time())
    with pytest.raises(RevokedTokenError) as info:
        verifier.verify(token(ec_key, kid="k1"))
    assert info.value.reason == "credential_rotated"
    assert verifier.verify(token(ec_key, kid="k2")).subject == "alice"


def test_agent_delegation_revoked(
    verifier: Verifier, ec_key: Any, rev: InMemoryRevocations
) -> None:
    rev.offboard("agent-7", kind="ai_agent")
    with pytest.raises(RevokedTokenError) as info:
        verifier.verify(token(ec_key, act={"sub": "agent-7"}, azp="chat-app"))
    assert info.value.reason == "delegation_revoked"


def test_stale_claims_carry_a_claims_challenge(
    verifier: Verifier, ec_key: Any, rev: InMemoryRevocations
) -> None:
    changed = time.time()
    rev.change_claims("alice", changed_at=changed)
    with pytest.raises(StaleClaimsError) as info:
        verifier.verify(token(ec_key))
    exc = info.value
    assert exc.status == 401
    assert exc.error == "insufficient_claims"
    challenge = json.loads(base64.b64decode(exc.claims))
    assert challenge == {
        "access_token": {"nbf": {"essential": True, "value": str(int(changed) + 1)}}
    }
    header = exc.www_authenticate()
    assert header.startswith('Bearer error="insufficient_claims"')
    assert f'claims="{exc.claims}"' in header


# --------------------------------------------------------------- freshness


def test_privileged_requests_need_a_fresh_view(ec_key: Any, rev: InMemoryRevocations) -> None:
    guard = FreshnessGuard(max_staleness=2.0)
    guard.set_partitions([0, 1])
    v = Verifier(ec_key.public_key(), algorithms=["ES256"], state=rev.state, freshness=guard,
                 issuer=ISS, audience=AUD)  # fmt: skip
    tok = token(ec_key)
    assert v.verify(tok).subject == "alice"  # not privileged: no freshness needed
    with pytest.raises(StaleViewError, match="not ready") as info:
        v.verify(tok, privileged=True)
    assert info.value.status == 503
    guard.mark_ready()
    now = time.time()
    guard.observe(0, now)
    with pytest.raises(StaleViewError, match="partition 1"):
        v.verify(tok, privileged=True)
    guard.observe(1, now)
    assert v.verify(tok, privileged=True).privileged
    with pytest.raises(StaleViewError, match=r"published 3\.0s ago"):
        v.verify(tok, privileged=True, now=now + 3)


def test_revoked_wins_over_stale_view(ec_key: Any, rev: InMemoryRevocations) -> None:
    rev.revoke_session("s-1")
    v = Verifier(ec_key.public_key(), algorithms=["ES256"], state=rev.state,
                 freshness=FreshnessGuard(), issuer=ISS, audience=AUD)  # fmt: skip
    with pytest.raises(RevokedTokenError):
        v.verify(token(ec_key, sid="s-1"), privileged=True)


def test_privileged_without_freshness_source_fails_closed(
    ec_key: Any, rev: InMemoryRevocations
) -> None:
    v = Verifier(ec_key.public_key(), algorithms=["ES256"], state=rev.state, issuer=ISS,
                 audience=AUD)  # fmt: skip
    with pytest.raises(StaleViewError, match="no freshness source"):
        v.verify(token(ec_key), privileged=True)


# ------------------------------------------------------------ verify_request


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (None, MissingTokenError),
        ("", MissingTokenError),
        ("Basic dXNlcjpwYXNz", MissingTokenError),
        ("Bearer ", InvalidTokenError),
        ("Bearer    ", InvalidTokenError),
    ],
)
def test_authorization_header_parsing(
    verifier: Verifier, header: str | None, error: type[TokenRejected]
) -> None:
    with pytest.raises(error):
        verify_request(verifier, header)


def test_verify_request(verifier: Verifier, ec_key: Any) -> None:
    tok = token(ec_key)
    assert verify_request(verifier, f"Bearer {tok}").subject == "alice"
    assert verify_request(verifier, f"bearer   {tok}  ").subject == "alice"
    assert bearer_token(f"Bearer {tok}") == tok


def test_rejections_belong_to_the_one_tree_and_never_log_the_token(
    verifier: Verifier, ec_key: Any, rev: InMemoryRevocations, caplog: pytest.LogCaptureFixture
) -> None:
    rev.revoke_token("j-1")
    tok = token(ec_key, jti="j-1")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RevocastError) as info:
        verify_request(verifier, f"Bearer {tok}")
    assert isinstance(info.value, TokenRejected)
    assert tok not in str(info.value)
    assert tok not in caplog.text
    assert any(getattr(r, "revocast", {}).get("reason") == "token_revoked" for r in caplog.records)
    signature = tok.rsplit(".", 1)[1]
    assert signature not in caplog.text
