"""Push delivery (RFC 8935) against the real broker and Redis, through a real uvicorn.

Each test POSTs SETs signed by transmitter keys to ``/ssf/v1/push/<name>`` and reads the
events topic to see what was (and was not) published.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette

from producer.ingress.ssf import PushServer, SsfIngress
from producer.ingress.ssf.testing import TransmitterKey, make_set, session_revoked_set
from producer.ingress.ssf.vocabulary import CAEP, RISC, STREAM_UPDATED, VERIFICATION
from producer.publisher import RevocationPublisher
from schemas import SessionRevoked, SigningKey, SubjectOffboarded, TopicNames
from tests.ingress_ssf.conftest import AUDIENCE, ISSUER, PUSH_TOKEN, SsfKit, transmitter
from tests.producer.producer_testkit import ApiServer

pytestmark = pytest.mark.integration

HEADERS = {"Content-Type": "application/secevent+jwt", "Authorization": f"Bearer {PUSH_TOKEN}"}


def post(url: str, body: str | bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(url, content=body, headers=headers or HEADERS, timeout=30)


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_push_publishes_once_kafka_acknowledged(
    kit: SsfKit,
    alg: str,
) -> None:
    settings = kit.settings(transmitter(list(kit.keys.values())))
    token = session_revoked_set(
        kit.keys[alg], iss=ISSUER, aud=AUDIENCE, user="alice", session_id="s-42", txn="txn-7"
    )
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    with PushServer(settings, kit.publisher, store=kit.store) as server:
        response = post(server.push_url("idp"), token)
    assert response.status_code == 202, response.text
    assert response.content == b""
    [env] = kit.published(expect=1)
    event = env.event
    assert isinstance(event, SessionRevoked)
    assert (event.session_id, event.subject.id) == ("s-42", "alice")
    assert event.source is not None
    assert (event.source.channel, event.source.origin) == ("ssf", ISSUER)
    assert (event.source.ref, event.source.txn) == (jti, "txn-7")
    assert event.source.toe is not None
    assert event.source.received_at is not None
    assert kit.store.seen("idp", jti)


def _hs256_with_public_key(key: TransmitterKey, claims: dict[str, Any]) -> str:
    pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = {"alg": "HS256", "typ": "secevent+jwt", "kid": key.kid}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def test_every_bad_input_gets_its_err_and_publishes_nothing(
    kit: SsfKit,
) -> None:
    rsa = kit.keys["RS256"]
    settings = kit.settings(transmitter([rsa]))
    now = int(time.time())
    user = {"format": "iss_sub", "iss": ISSUER, "sub": "alice"}

    def claims(**kw: Any) -> dict[str, Any]:
        base = make_set(
            iss=ISSUER, aud=AUDIENCE, events={CAEP + "session-revoked": {}}, sub_id=user
        )
        base.update(kw)
        return base

    none_header = base64.urlsafe_b64encode(
        json.dumps({"alg": "none", "typ": "secevent+jwt"}).encode()
    ).rstrip(b"=")
    none_body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
    cases: list[tuple[str, bytes | str, dict[str, str], str]] = [
        (
            "wrong content type",
            rsa.sign(claims()),
            {**HEADERS, "Content-Type": "application/jwt"},
            "invalid_request",
        ),
        ("oversized body", b"x" * (70 * 1024), HEADERS, "invalid_request"),
        (
            "no bearer token",
            rsa.sign(claims()),
            {"Content-Type": HEADERS["Content-Type"]},
            "authentication_failed",
        ),
        (
            "wrong bearer token",
            rsa.sign(claims()),
            {**HEADERS, "Authorization": "Bearer nope"},
            "authentication_failed",
        ),
        (
            "unknown key",
            TransmitterKey.generate("RS256", kid="elsewhere").sign(claims()),
            HEADERS,
            "invalid_key",
        ),
        ("expired iat", rsa.sign(claims(iat=now - 3 * 86400)), HEADERS, "invalid_request"),
        ("future iat", rsa.sign(claims(iat=now + 3600)), HEADERS, "invalid_request"),
        (
            "wrong aud",
            rsa.sign(claims(aud="https://someone-else.example")),
            HEADERS,
            "invalid_audience",
        ),
        ("wrong iss", rsa.sign(claims(iss="https://evil.example")), HEADERS, "invalid_issuer"),
        (
            "unknown subject format",
            rsa.sign(claims(sub_id={"format": "catalog_item", "c": "1"})),
            HEADERS,
            "invalid_request",
        ),
        ("alg none", none_header + b"." + none_body + b".", HEADERS, "invalid_key"),
        (
            "HS256 keyed with the public key",
            _hs256_with_public_key(rsa, claims()),
            HEADERS,
            "invalid_key",
        ),
        ("malformed", b"{not a jwt", HEADERS, "invalid_request"),
    ]
    with PushServer(settings, kit.publisher, store=kit.store) as server:
        for what, body, headers, err in cases:
            response = post(server.push_url("idp"), body, headers)
            assert response.status_code == 400, (what, response.text)
            answer = response.json()
            assert answer["err"] == err, (what, answer)
            assert answer["description"], what
            assert PUSH_TOKEN not in answer["description"]
        unknown = post(f"{server.url}/ssf/v1/push/nobody", rsa.sign(claims()))
        assert unknown.json()["err"] == "authentication_failed"
    assert kit.published(expect=0, timeout=3) == []


def test_duplicate_jti_is_accepted_once(
    kit: SsfKit,
) -> None:
    ed = kit.keys["EdDSA"]
    settings = kit.settings(transmitter([ed]))
    token = ed.sign(
        make_set(
            iss=ISSUER,
            aud=AUDIENCE,
            events={RISC + "account-disabled": {"reason": "hijacking"}},
            sub_id={"format": "email", "email": "Bob@Example.com"},
        )
    )
    with PushServer(settings, kit.publisher, store=kit.store) as server:
        codes = [post(server.push_url("idp"), token).status_code for _ in range(3)]
    assert codes == [202, 202, 202]
    events = kit.published(expect=2, timeout=4)  # waits for a second copy that must not exist
    assert len(events) == 1
    event = events[0].event
    assert isinstance(event, SubjectOffboarded)
    assert event.subject.id == "bob@example.com"
    assert event.reason is not None
    assert "hijacking" in event.reason


def test_broker_down_answers_503_and_the_retry_publishes(
    kit: SsfKit,
    signing_key: SigningKey,
    topics: TopicNames,
) -> None:
    es = kit.keys["ES256"]
    settings = kit.settings(transmitter([es]))
    token = session_revoked_set(es, iss=ISSUER, aud=AUDIENCE, user="carol", session_id="s-9")
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]

    def unreachable() -> RevocationPublisher:
        # a real kit.publisher to a port where no broker listens
        return RevocationPublisher(
            "127.0.0.1:1", topics, signing_key, connect_timeout=1, delivery_timeout=1
        )

    down = SsfIngress(settings, unreachable, store=kit.store)
    with ApiServer(Starlette(routes=[down.mount()])) as server:
        response = post(f"{server.url}/ssf/v1/push/idp", token)
    down.close()
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert not kit.store.seen("idp", jti)  # nothing acknowledged, nothing marked
    with PushServer(settings, kit.publisher, store=kit.store) as server:
        assert post(server.push_url("idp"), token).status_code == 202
    [env] = kit.published(expect=1)
    assert isinstance(env.event, SessionRevoked)
    assert env.event.session_id == "s-9"


def test_control_events_verification_and_stream_updated(
    kit: SsfKit,
) -> None:
    ed = kit.keys["EdDSA"]
    settings = kit.settings(transmitter([ed], stream_id="stream-1"))
    stream = {"format": "opaque", "id": "stream-1"}

    def control(uri: str, payload: dict[str, Any], sub: dict[str, Any] = stream) -> str:
        return ed.sign(make_set(iss=ISSUER, aud=AUDIENCE, events={uri: payload}, sub_id=sub))

    with PushServer(settings, kit.publisher, store=kit.store) as server:
        url = server.push_url("idp")
        state = server.ingress.receiver.new_verification_state("idp")
        wrong = post(url, control(VERIFICATION, {"state": "forged"}))
        assert wrong.status_code == 400
        assert wrong.json()["err"] == "invalid_state"
        other = post(url, control(VERIFICATION, {"state": state}, {"format": "opaque", "id": "x"}))
        assert other.json()["err"] == "invalid_request"
        assert post(url, control(VERIFICATION, {"state": state})).status_code == 202
        assert "verified_at" in kit.store.status("idp")
        paused = control(STREAM_UPDATED, {"status": "paused", "reason": "maintenance\nwindow"})
        assert post(url, paused).status_code == 202
        status = kit.store.status("idp")
        assert status["status"] == "paused"
        assert status["reason"] == "maintenance\\nwindow"  # escaped: one log line, one field
        bogus = post(url, control(STREAM_UPDATED, {"status": "exploded"}))
        assert bogus.json()["err"] == "invalid_request"
        assert post(url, control(STREAM_UPDATED, {"status": "enabled"})).status_code == 202
        assert kit.store.status("idp")["status"] == "enabled"
        # known, not applied types and unknown types: 202, nothing published
        user = {"format": "email", "email": "dave@example.com"}
        for uri in (
            CAEP + "session-established",
            RISC + "account-enabled",
            "https://vendor.example/event-type/whatever",
        ):
            assert post(url, control(uri, {}, user)).status_code == 202, uri
    assert kit.published(expect=0, timeout=3) == []


def test_disabled_transmitter_and_poll_transmitter_are_denied(
    kit: SsfKit,
) -> None:
    ed = kit.keys["EdDSA"]
    settings = kit.settings(
        transmitter([ed], name="off", enabled=False),
        transmitter([ed], name="poller", issuer="https://other.example", delivery="poll"),
    )
    token = session_revoked_set(ed, iss=ISSUER, aud=AUDIENCE, user="erin")
    with PushServer(settings, kit.publisher, store=kit.store) as server:
        for name in ("off", "poller"):
            response = post(server.push_url(name), token)
            assert response.status_code == 400
            assert response.json()["err"] == "access_denied", name


def test_push_is_mounted_in_the_http_api(
    kit: SsfKit,
    signing_key: SigningKey,
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from producer.api import create_app
    from producer.settings import ProducerSettings

    for name in ProducerSettings.model_fields:
        monkeypatch.delenv(f"REVOCAST_{name.upper()}", raising=False)
    ed = kit.keys["EdDSA"]
    ssf = kit.settings(transmitter([ed]))
    app = create_app(
        ProducerSettings.load(bootstrap_servers=kafka_bootstrap),
        signer=signing_key,
        publisher=kit.publisher,
        warm_up=False,
        ssf=ssf,
    )
    token = session_revoked_set(ed, iss=ISSUER, aud=AUDIENCE, user="frank")
    with ApiServer(app) as server:
        response = post(f"{server.url}/ssf/v1/push/idp", token)
        assert response.status_code == 202, response.text
        refused = post(f"{server.url}/ssf/v1/push/idp", token, {**HEADERS, "Authorization": ""})
        assert refused.json()["err"] == "authentication_failed"
    [env] = kit.published(expect=1)
    assert isinstance(env.event, SubjectOffboarded)
    assert env.event.subject.id == "frank"
