"""Unit tests (no broker, no Redis): SET validation, subject formats, the event mapping, settings.

Signatures are real (keys of each algorithm); only the transport is absent.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from producer.ingress.ssf import (
    EVENT_TYPES,
    SUBJECT_FORMATS,
    Action,
    SetRejected,
    SetValidator,
    SsfSettings,
    TransmitterKeys,
    plan,
)
from producer.ingress.ssf.testing import TransmitterKey, make_set, session_revoked_set
from producer.ingress.ssf.vocabulary import CAEP, RISC, STREAM_UPDATED, VERIFICATION
from schemas import (
    ClaimsChanged,
    ConfigError,
    CredentialKind,
    CredentialRotated,
    SessionRevoked,
    SubjectOffboarded,
    TokenRevoked,
)
from tests.ingress_ssf.conftest import AUDIENCE, ISSUER, transmitter


def validator(keys: list[TransmitterKey], **overrides: Any) -> SetValidator:
    config = transmitter(keys, **overrides)
    return SetValidator(config, TransmitterKeys(config, httpx.Client()), max_set_bytes=64 * 1024)


def signed(key: TransmitterKey, event: str, payload: dict[str, Any], sub_id: Any, **kw: Any) -> str:
    return key.sign(
        make_set(iss=ISSUER, aud=AUDIENCE, events={event: payload}, sub_id=sub_id, **kw)
    )


def rejected(v: SetValidator, token: str | bytes) -> SetRejected:
    with pytest.raises(SetRejected) as info:
        plan(v.validate(token))
    return info.value


USER = {"format": "iss_sub", "iss": ISSUER, "sub": "alice"}


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_each_algorithm_validates(tx_keys: dict[str, TransmitterKey], alg: str) -> None:
    v = validator(list(tx_keys.values()))
    token = session_revoked_set(tx_keys[alg], iss=ISSUER, aud=AUDIENCE, user="alice", txn="t-1")
    vset = v.validate(token)
    assert vset.alg == alg
    assert vset.kid == f"tx-{alg}"
    assert vset.txn == "t-1"
    [event] = plan(vset).events
    assert isinstance(event, SubjectOffboarded)
    assert event.subject.id == "alice"
    assert event.source is not None
    assert event.source.channel == "ssf"
    assert event.source.origin == ISSUER
    assert event.source.ref == vset.jti


def _unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64(claims)}."


def test_bad_sets_get_the_rfc_error(tx_keys: dict[str, TransmitterKey]) -> None:
    ed = tx_keys["EdDSA"]
    v = validator([ed])
    good = make_set(iss=ISSUER, aud=AUDIENCE, events={CAEP + "session-revoked": {}}, sub_id=USER)
    stranger = TransmitterKey.generate("EdDSA", kid="stranger")
    impostor = TransmitterKey.generate("EdDSA", kid=ed.kid)  # same kid, other key
    cases: list[tuple[str | bytes, str, str]] = [
        (stranger.sign(good), "invalid_key", "not a signing key"),
        (impostor.sign(good), "invalid_key", "does not verify"),
        (
            _unsigned(good, {"alg": "none", "typ": "secevent+jwt", "kid": ed.kid}),
            "invalid_key",
            "never none",
        ),
        (
            jwt.encode(
                good, "x" * 32, algorithm="HS256", headers={"kid": ed.kid, "typ": "secevent+jwt"}
            ),
            "invalid_key",
            "never HMAC",
        ),
        (ed.sign({**good, "iss": "https://evil.example"}), "invalid_issuer", "iss"),
        (ed.sign({**good, "aud": "https://other.example"}), "invalid_audience", "aud"),
        (ed.sign({**good, "iat": int(time.time()) - 2 * 86400}), "invalid_request", "expired"),
        (ed.sign({**good, "iat": int(time.time()) + 3600}), "invalid_request", "future"),
        (ed.sign({**good, "iat": 10**12}), "invalid_request", "2000..2100"),
        (ed.sign(good, typ="JWT"), "invalid_request", "typ"),
        (ed.sign({**good, "exp": int(time.time()) + 60}), "invalid_request", "exp"),
        (ed.sign({**good, "sub": "alice"}), "invalid_request", "sub"),
        (ed.sign({**good, "jti": "x" * 300}), "invalid_request", "jti"),
        (ed.sign({**good, "jti": "a\nb"}), "invalid_request", "jti"),
        (ed.sign({k: v for k, v in good.items() if k != "jti"}), "invalid_request", "jti"),
        (ed.sign({**good, "events": {}}), "invalid_request", "events"),
        (
            ed.sign({**good, "sub_id": {"format": "catalog_item", "id": "1"}}),
            "invalid_request",
            "unknown subject format",
        ),
        (ed.sign({**good, "sub_id": {"format": "email"}}), "invalid_request", "email"),
        (b"not a jwt", "invalid_request", "compact JWS"),
        ("a.b.c.d.e", "invalid_request", "encrypted"),
        (b"\xff" * 10, "invalid_request", "ASCII"),
        (ed.sign({**good, "pad": "x" * 70_000}), "invalid_request", "larger than"),
    ]
    for token, err, words in cases:
        exc = rejected(v, token)
        assert exc.err == err, (words, exc)
        assert words in exc.description, (words, exc.description)


def test_hmac_with_the_public_key_as_secret_is_refused(tx_keys: dict[str, TransmitterKey]) -> None:
    """The classic key confusion: HS256 keyed with the transmitter's public key bytes."""
    rsa = tx_keys["RS256"]
    pem = rsa.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    good = make_set(iss=ISSUER, aud=AUDIENCE, events={CAEP + "session-revoked": {}}, sub_id=USER)
    import hashlib
    import hmac

    header = {"alg": "HS256", "typ": "secevent+jwt", "kid": rsa.kid}

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(good).encode())}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    exc = rejected(validator([rsa]), f"{signing_input}.{b64(mac)}")
    assert exc.err == "invalid_key"
    assert "never HMAC" in exc.description


def test_key_of_the_wrong_type_for_the_alg_is_refused(tx_keys: dict[str, TransmitterKey]) -> None:
    es = tx_keys["ES256"]
    liar = TransmitterKey(alg="EdDSA", kid=es.kid, private_key=tx_keys["EdDSA"].private_key)
    good = make_set(iss=ISSUER, aud=AUDIENCE, events={CAEP + "session-revoked": {}}, sub_id=USER)
    exc = rejected(validator([es]), liar.sign(good))
    assert exc.err == "invalid_key"
    assert "needs OKP" in exc.description


# --------------------------------------------------------------------------- subjects


@pytest.mark.parametrize(
    ("sub_id", "expected"),
    [
        ({"format": "opaque", "id": "u-1"}, "u-1"),
        ({"format": "email", "email": "Alice@Example.COM"}, "alice@example.com"),
        ({"format": "iss_sub", "iss": ISSUER, "sub": "00u1"}, "00u1"),
        ({"format": "phone_number", "phone_number": "+12065550100"}, "+12065550100"),
        ({"format": "account", "uri": "acct:alice@example.com"}, "acct:alice@example.com"),
        ({"format": "uri", "uri": "https://example.com/users/1"}, "https://example.com/users/1"),
        ({"format": "did", "url": "did:example:123"}, "did:example:123"),
        (
            {
                "format": "aliases",
                "identifiers": [
                    {"format": "ip-addresses", "ip-addresses": ["127.0.0.1"]},
                    {"format": "email", "email": "bob@example.com"},
                ],
            },
            "bob@example.com",
        ),
        (
            {
                "format": "complex",
                "user": {"format": "opaque", "id": "u-9"},
                "tenant": {"format": "opaque", "id": "t-1"},
                "device": {"format": "opaque", "id": "d-1"},
            },
            "u-9",
        ),
        ({"subject_type": "iss_sub", "iss": ISSUER, "sub": "g-1"}, "g-1"),  # Google's RISC
    ],
)
def test_user_subject_formats(
    tx_keys: dict[str, TransmitterKey], sub_id: dict[str, Any], expected: str
) -> None:
    ed = tx_keys["EdDSA"]
    v = validator([ed])
    [event] = plan(v.validate(signed(ed, RISC + "account-disabled", {}, sub_id))).events
    assert isinstance(event, SubjectOffboarded)
    assert event.subject.id == expected
    assert event.subject.tenant is None  # unscoped unless configured
    if sub_id.get("format") == "complex":
        scoped = validator([ed], tenant_scoped=True)
        [event] = plan(scoped.validate(signed(ed, RISC + "account-disabled", {}, sub_id))).events
        assert event.subject.tenant == "t-1"


def test_session_token_and_saml_subjects(tx_keys: dict[str, TransmitterKey]) -> None:
    ed = tx_keys["EdDSA"]
    v = validator([ed])
    revoked = CAEP + "session-revoked"

    def one(payload: dict[str, Any], sub_id: Any) -> Any:
        [event] = plan(v.validate(signed(ed, revoked, payload, sub_id))).events
        return event

    e = one({}, {"format": "opaque", "id": "dMTlD|1600802906337.16|16008.16"})
    assert isinstance(e, SessionRevoked)
    assert e.session_id == "dMTlD|1600802906337.16|16008.16"
    e = one({}, {"format": "complex", "user": USER, "session": {"format": "opaque", "id": "s-1"}})
    assert isinstance(e, SessionRevoked)
    assert (e.session_id, e.subject.id) == ("s-1", "alice")
    e = one({"sid": "s-2"}, USER)
    assert isinstance(e, SessionRevoked)
    assert e.session_id == "s-2"
    e = one({}, USER)
    assert isinstance(e, SubjectOffboarded)
    assert e.subject.id == "alice"
    e = one({}, {"format": "jwt_id", "iss": ISSUER, "jti": "tok-1"})
    assert isinstance(e, TokenRevoked)
    assert e.jti == "tok-1"
    assert e.subject.id == "ssf:idp"
    e = one({}, {"format": "saml_assertion_id", "issuer": ISSUER, "assertion_id": "_a75"})
    assert isinstance(e, TokenRevoked)
    assert e.jti == "_a75"
    # the older placement: subject inside the event, no sub_id
    token = ed.sign(make_set(iss=ISSUER, aud=AUDIENCE, events={revoked: {"subject": USER}}))
    [e] = plan(v.validate(token)).events
    assert isinstance(e, SubjectOffboarded)
    assert e.subject.id == "alice"


def test_subject_refusals(tx_keys: dict[str, TransmitterKey]) -> None:
    ed = tx_keys["EdDSA"]
    v = validator([ed])
    revoked = CAEP + "session-revoked"
    for sub_id, words in [
        ({"format": "iss_sub", "iss": "https://other.example", "sub": "x"}, "trusted"),
        ({"format": "jwt_id", "iss": "https://other.example", "jti": "x"}, "trusted"),
        ({"format": "complex", "device": {"format": "opaque", "id": "d"}}, "device"),
        ({"format": "complex", "user": {"format": "complex", "x": USER}}, "cannot nest"),
        ({"format": "ip-addresses", "ip-addresses": ["127.0.0.1"]}, "names no user"),
        ({"format": "email", "email": "x" * 300}, "1..256"),
        ({"format": "opaque", "id": "a\x1bb"}, "printable"),
    ]:
        exc = rejected(v, signed(ed, revoked, {}, sub_id))
        assert exc.err == "invalid_request", (sub_id, exc)
        assert words in exc.description, (sub_id, exc)
    assert "names no subject" in rejected(v, signed(ed, revoked, {}, None)).description


def test_subject_mapping_is_configurable(tx_keys: dict[str, TransmitterKey]) -> None:
    ed = tx_keys["EdDSA"]
    v = validator(
        [ed],
        subject_prefix="okta|",
        subject_formats={"iss_sub": "sub"},
        subject_issuers=["https://org.okta.example/oauth2/default"],
        lowercase_email=False,
        opaque_session_revoked="user",
        subject_kind="service_account",
    )
    sub = {"format": "iss_sub", "iss": "https://org.okta.example/oauth2/default", "sub": "00u1"}
    [e] = plan(v.validate(signed(ed, CAEP + "session-revoked", {}, sub))).events
    assert isinstance(e, SubjectOffboarded)
    assert e.subject.id == "okta|00u1"
    assert e.subject.kind == "service_account"
    [e] = plan(
        v.validate(signed(ed, CAEP + "session-revoked", {}, {"format": "opaque", "id": "U"}))
    ).events
    assert isinstance(e, SubjectOffboarded)
    assert e.subject.id == "okta|U"


# --------------------------------------------------------------------------- mapping


def test_every_known_event_type_maps_as_documented(tx_keys: dict[str, TransmitterKey]) -> None:
    ed = tx_keys["EdDSA"]
    v = validator(
        [ed],
        apply_optional=["assurance-level-change", "risk-level-change", "device-compliance-change"],
    )
    payloads: dict[str, dict[str, Any]] = {
        CAEP + "token-claims-change": {"claims": {"role": "ro-admin", "groups": []}},
        CAEP + "credential-change": {"credential_type": "password", "change_type": "update"},
        CAEP + "device-compliance-change": {
            "previous_status": "compliant",
            "current_status": "not-compliant",
        },
        CAEP + "assurance-level-change": {"namespace": "NIST-AAL", "current_level": "nist-aal1"},
        CAEP + "risk-level-change": {"principal": "USER", "current_level": "HIGH"},
        RISC + "credential-compromise": {"credential_type": "password"},
    }
    expected_type = {
        Action.SESSION: SubjectOffboarded,
        Action.OFFBOARD: SubjectOffboarded,
        Action.CLAIMS: ClaimsChanged,
        Action.OPTIONAL_CLAIMS: ClaimsChanged,
        Action.CREDENTIAL: CredentialRotated,
    }
    for uri, (action, _) in EVENT_TYPES.items():
        if action in (Action.VERIFY, Action.STREAM):
            continue
        result = plan(v.validate(signed(ed, uri, payloads.get(uri, {}), USER)))
        if action is Action.LOG:
            assert result.events == [], uri
            assert "never applied" in result.notes[0], uri
            continue
        [event] = result.events
        assert isinstance(event, expected_type[action]), uri
        assert event.subject.id == "alice"
        assert event.expires_at > event.source.received_at + timedelta(hours=23)  # type: ignore[union-attr]
    claims = plan(
        v.validate(
            signed(ed, CAEP + "token-claims-change", payloads[CAEP + "token-claims-change"], USER)
        )
    ).events[0]
    assert isinstance(claims, ClaimsChanged)
    assert claims.claims == ("groups", "role")
    cred = plan(
        v.validate(
            signed(ed, CAEP + "credential-change", payloads[CAEP + "credential-change"], USER)
        )
    ).events[0]
    assert isinstance(cred, CredentialRotated)
    assert (cred.credential_id, cred.credential_kind) == ("alice", CredentialKind.CLIENT)


def test_optional_and_unapplied_types_are_only_logged(tx_keys: dict[str, TransmitterKey]) -> None:
    ed = tx_keys["EdDSA"]
    v = validator([ed], apply_events=["session-revoked"])
    for uri in (
        CAEP + "risk-level-change",
        RISC + "account-disabled",
        "https://example.com/event-type/custom",
    ):
        result = plan(v.validate(signed(ed, uri, {}, USER)))
        assert result.events == [], uri
        assert result.notes, uri
    assert (
        "unknown event type"
        in plan(v.validate(signed(ed, "https://example.com/x", {}, USER))).notes[0]
    )
    created = validator([ed])
    result = plan(
        created.validate(
            signed(
                ed,
                CAEP + "credential-change",
                {"credential_type": "fido2-roaming", "change_type": "create"},
                USER,
            )
        )
    )
    assert result.events == []
    assert "nothing to revoke" in result.notes[0]
    app = {"format": "complex", "user": USER, "application": {"format": "opaque", "id": "ci-bot"}}
    [e] = plan(
        created.validate(
            signed(
                ed,
                CAEP + "credential-change",
                {"credential_type": "app", "change_type": "revoke"},
                app,
            )
        )
    ).events
    assert isinstance(e, CredentialRotated)
    assert e.credential_id == "ci-bot"
    offboarding = validator([ed], credential_change_offboards_users=True)
    [e] = plan(
        offboarding.validate(
            signed(
                ed,
                CAEP + "credential-change",
                {"credential_type": "password", "change_type": "update"},
                USER,
            )
        )
    ).events
    assert isinstance(e, SubjectOffboarded)


def test_control_events_are_planned_not_published(tx_keys: dict[str, TransmitterKey]) -> None:
    ed = tx_keys["EdDSA"]
    v = validator([ed])
    stream = {"format": "opaque", "id": "stream-1"}
    for uri, payload in ((VERIFICATION, {"state": "abc"}), (STREAM_UPDATED, {"status": "paused"})):
        result = plan(v.validate(signed(ed, uri, payload, stream)))
        assert result.events == []
        assert result.controls[0].stream_id == "stream-1"


def test_vocabulary_covers_caep_and_risc() -> None:
    caep = {u for u in EVENT_TYPES if u.startswith(CAEP)}
    risc = {u for u in EVENT_TYPES if u.startswith(RISC)}
    assert len(caep) == 8
    assert len(risc) == 14
    for name in (
        "opaque",
        "email",
        "iss_sub",
        "phone_number",
        "account",
        "uri",
        "did",
        "jwt_id",
        "saml_assertion_id",
        "complex",
    ):
        assert name in SUBJECT_FORMATS


# --------------------------------------------------------------------------- settings


def test_settings_from_env_redact_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = [
        {
            "name": "okta",
            "issuer": "https://org.okta.example",
            "audience": ["https://rc/ssf"],
            "push_token": "s3cret-s3cret-s3cret",
            "management_token": "m4nage-m4nage-m4nage",
            "apply_events": ["session-revoked", "risc/account-disabled"],
            "max_credential_lifetime": "8h",
        }
    ]
    monkeypatch.setenv("REVOCAST_SSF_TRANSMITTERS", json.dumps(raw))
    settings = SsfSettings.load()
    [okta] = settings.all_transmitters()
    assert okta.max_credential_lifetime == timedelta(hours=8)
    assert okta.apply_events == {CAEP + "session-revoked", RISC + "account-disabled"}
    assert okta.discovery_url == "https://org.okta.example/.well-known/ssf-configuration"
    text = json.dumps(settings.redacted())
    assert "s3cret" not in text
    assert "m4nage" not in text
    assert "***" in text
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"push_token": None}, "push_token"),
        ({"push_token": "short"}, "16 characters"),
        ({"name": "bad name"}, "name"),
        ({"apply_events": ["no-such-event"]}, "unknown event type"),
        ({"apply_optional": ["session-revoked"]}, "not optional"),
        ({"audience": []}, "audience"),
        ({"max_credential_lifetime": "400d"}, "at most"),
        ({"clock_skew": "2h"}, "at most"),
    ],
)
def test_settings_errors_name_the_field(
    monkeypatch: pytest.MonkeyPatch, change: dict[str, Any], words: str
) -> None:
    raw = {"name": "okta", "issuer": ISSUER, "audience": [AUDIENCE], "push_token": "p" * 20}
    raw.update(change)
    monkeypatch.setenv("REVOCAST_SSF_TRANSMITTERS", json.dumps([raw]))
    with pytest.raises(ConfigError, match=words):
        SsfSettings.load()


def test_discovery_url_keeps_the_issuer_path() -> None:
    config = transmitter([], jwks=None, issuer="https://tr.example.com/issuer1/")
    assert config.discovery_url == "https://tr.example.com/.well-known/ssf-configuration/issuer1"


# --------------------------------------------------------------------------- README


def _readme_section() -> str:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = text.index("## Connecting an IdP by Shared Signals")
    return text[start : text.index("\n## ", start + 10)]


def test_readme_example_configuration_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    section = _readme_section()
    start = section.index("REVOCAST_SSF_TRANSMITTERS='") + len("REVOCAST_SSF_TRANSMITTERS='")
    raw = section[start : section.index("'", start)]
    monkeypatch.setenv("REVOCAST_SSF_TRANSMITTERS", raw)
    [okta] = SsfSettings.load().all_transmitters()
    assert okta.name == "okta"
    assert okta.delivery == "push"
    assert okta.max_credential_lifetime == timedelta(hours=1)


def test_readme_lists_every_event_type_and_subject_format() -> None:
    section = _readme_section()
    for uri in EVENT_TYPES:
        name = uri.rstrip("/").rsplit("/", 1)[-1]
        assert f"`{name}`" in section, name
    for fmt in SUBJECT_FORMATS:
        assert f"`{fmt}`" in section, fmt


def test_all_is_honest() -> None:
    import producer.ingress.ssf as ssf

    exported = set(ssf.__all__)
    assert len(exported) == len(ssf.__all__)
    assert {name for name in exported if not hasattr(ssf, name)} == set()
    public = {
        name
        for name, value in vars(ssf).items()
        if not name.startswith("_")
        and getattr(value, "__module__", "").startswith("producer.ingress.ssf.")
    }
    assert public <= exported, public - exported
