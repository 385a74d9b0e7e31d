"""The event contract: strict models, signed codec, precise errors, exported schema."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from schemas import (
    BadSignatureError,
    ClaimsChanged,
    ConfigError,
    CredentialKind,
    CredentialRotated,
    Envelope,
    Heartbeat,
    KeySet,
    MissingSignatureError,
    SchemaViolationError,
    SessionRevoked,
    SigningKey,
    Subject,
    SubjectOffboarded,
    TokenRevoked,
    UndecodableEventError,
    UnknownEventTypeError,
    UnknownKeyError,
    UnsupportedVersionError,
    decode,
    encode,
    in_seconds,
)
from schemas.export import main as export_main

AGENT = Subject(id="agent-7", kind="ai_agent", tenant="acme")


def all_events() -> list:
    later = in_seconds(3600)
    now = datetime.now(UTC)
    return [
        SessionRevoked(subject=AGENT, session_id="s-1", expires_at=later),
        TokenRevoked(subject=AGENT, jti="j-1", expires_at=later, reason="leaked in a log"),
        SubjectOffboarded(subject=AGENT, not_before=now, expires_at=later),
        ClaimsChanged(subject=AGENT, changed_at=now, claims=("roles",), expires_at=later),
        CredentialRotated(
            subject=AGENT,
            credential_id="client-9",
            credential_kind=CredentialKind.CLIENT,
            not_before=now,
            expires_at=later,
        ),
        Heartbeat(partition=2, emitter="hb-1"),
    ]


@pytest.mark.parametrize("event", all_events(), ids=lambda e: e.type)
def test_every_event_type_round_trips_signed(event, signing_key, trusted_keys) -> None:
    env = Envelope.wrap(event, issuer="iam.test")
    wire = encode(env, signing_key)
    assert wire.count(b".") == 2  # a compact JWS, not plain JSON
    assert decode(wire, trusted_keys) == env


def test_partition_key_is_the_subject_and_heartbeats_have_none() -> None:
    events = all_events()
    assert Envelope.wrap(events[0], issuer="x").partition_key == b"agent-7"
    assert Envelope.wrap(events[-1], issuer="x").partition_key is None


def test_models_are_frozen_and_strict() -> None:
    ev = all_events()[0]
    with pytest.raises(ValueError, match="frozen"):
        ev.session_id = "other"
    with pytest.raises(ValueError, match="Extra inputs"):
        SessionRevoked(subject=AGENT, session_id="s", expires_at=in_seconds(1), un_revoke=True)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        SubjectOffboarded(
            subject=AGENT,
            not_before=datetime(2026, 1, 1),  # noqa: DTZ001 (the point of the test)
            expires_at=in_seconds(1),
        )


def test_unsigned_event_is_refused_when_signatures_are_required(trusted_keys) -> None:
    env = Envelope.wrap(all_events()[0], issuer="x")
    with pytest.raises(MissingSignatureError) as info:
        decode(encode(env, None), trusted_keys)
    assert info.value.reason == "missing_signature"
    assert decode(encode(env, None), None, require_signature=False) == env


def test_forged_event_names_the_unknown_kid(trusted_keys) -> None:
    forger = SigningKey.generate("attacker")
    env = Envelope.wrap(all_events()[0], issuer="x")
    with pytest.raises(UnknownKeyError, match="attacker"):
        decode(encode(env, forger), trusted_keys)


def test_wrong_key_under_a_trusted_kid_is_a_bad_signature(signing_key, trusted_keys) -> None:
    impostor = SigningKey(kid=signing_key.kid, private_key=SigningKey.generate("x").private_key)
    env = Envelope.wrap(all_events()[0], issuer="x")
    with pytest.raises(BadSignatureError) as info:
        decode(encode(env, impostor), trusted_keys)
    assert info.value.reason == "bad_signature"


def test_tampered_payload_fails_verification(signing_key, trusted_keys) -> None:
    header, payload, sig = encode(Envelope.wrap(all_events()[0], issuer="x"), signing_key).split(
        b"."
    )
    tampered = header + b"." + payload[:-4] + b"AAAA" + b"." + sig
    with pytest.raises((BadSignatureError, UndecodableEventError)):
        decode(tampered, trusted_keys)


def test_rotation_overlap_trusts_both_keys() -> None:
    old, new = SigningKey.generate("2026-10"), SigningKey.generate("2026-11")
    jwks = {"keys": [old.public_jwk(), new.public_jwk()]}
    keys = KeySet.from_jwks(json.loads(json.dumps(jwks)))
    for key in (old, new):
        env = Envelope.wrap(all_events()[1], issuer="x")
        assert decode(encode(env, key), keys) == env


def test_private_jwk_round_trip_and_bad_jwks_are_config_errors(tmp_path) -> None:
    key = SigningKey.generate("k")
    path = tmp_path / "k.json"
    path.write_text(json.dumps(key.private_jwk()))
    assert SigningKey.from_file(path).public_jwk() == key.public_jwk()
    with pytest.raises(ConfigError, match="'keys'"):
        KeySet.from_jwks({"nope": []})
    with pytest.raises(ConfigError, match="kid"):
        KeySet.from_jwks({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AA"}]})
    with pytest.raises(ConfigError, match="cannot read"):
        KeySet.from_file(tmp_path / "missing.json")


def _unsigned(raw: dict) -> bytes:
    return json.dumps(raw).encode()


def _valid_raw() -> dict:
    return json.loads(Envelope.wrap(all_events()[0], issuer="x").model_dump_json())


@pytest.mark.parametrize(
    ("mutate", "error", "needle"),
    [
        (lambda r: r.update(v=2), UnsupportedVersionError, "version 2"),
        (lambda r: r["event"].update(type="session.unrevoked"), UnknownEventTypeError, "unrevoked"),
        (lambda r: r["event"].pop("session_id"), SchemaViolationError, "session_id"),
        (lambda r: r.update(event_id="not-a-uuid"), SchemaViolationError, "event_id"),
        (lambda r: r.update(event_id=str(uuid.uuid1())), SchemaViolationError, "version 4 or 7"),
        (lambda r: r["event"]["subject"].update(kind="robot"), SchemaViolationError, "kind"),
    ],
)
def test_bad_envelopes_name_what_is_wrong(mutate, error, needle) -> None:
    raw = _valid_raw()
    mutate(raw)
    with pytest.raises(error, match=needle):
        decode(_unsigned(raw), None, require_signature=False)


@pytest.mark.parametrize("data", [b"", b"\xff\xfe", b"[1,2]", b"a.b.c"])
def test_garbage_is_undecodable(data, trusted_keys) -> None:
    with pytest.raises((UndecodableEventError, MissingSignatureError, BadSignatureError)):
        decode(data, trusted_keys, require_signature=False)


def test_schema_violation_names_the_field() -> None:
    raw = _valid_raw()
    del raw["event"]["subject"]
    with pytest.raises(SchemaViolationError) as info:
        decode(_unsigned(raw), None, require_signature=False)
    assert info.value.field is not None
    assert "subject" in info.value.field


def test_committed_json_schema_is_up_to_date() -> None:
    assert export_main(["--check"]) == 0, "run `python -m schemas.export` and commit the result"


def test_json_schema_lists_every_event_type() -> None:
    from schemas.export import json_schemas

    text = json.dumps(json_schemas()["envelope.v1.json"])
    for name in (
        "session.revoked",
        "token.revoked",
        "subject.offboarded",
        "claims.changed",
        "credential.rotated",
        "heartbeat",
    ):
        assert name in text


def test_published_at_is_nanoseconds_of_now() -> None:
    env = Envelope.wrap(all_events()[0], issuer="x")
    assert abs(env.published_at - datetime.now(UTC)) < timedelta(seconds=5)
    assert env.restamped().published_at_ns >= env.published_at_ns


# ------------------------------------------------------------ bounds (hardening)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        # 10**400 overflowed float() in every consumer's freshness arithmetic.
        (lambda r: r.update(published_at_ns=10**400), "published_at_ns"),
        (lambda r: r.update(published_at_ns=-1), "published_at_ns"),
        (lambda r: r["event"].update(expires_at="9999-12-31T00:00:00Z"), "expires_at"),
        (lambda r: r["event"].update(expires_at="1970-01-02T00:00:00Z"), "expires_at"),
        (lambda r: r["event"]["subject"].update(id="alice\nINFO forged line"), "subject.id"),
        (lambda r: r["event"].update(session_id="s\x1b[31m"), "session_id"),
        (lambda r: r.update(issuer="iam\r\nx"), "issuer"),
    ],
)
def test_every_time_and_id_from_the_topic_is_bounded(mutate, needle) -> None:
    raw = _valid_raw()
    mutate(raw)
    with pytest.raises(SchemaViolationError, match=needle):
        decode(_unsigned(raw), None, require_signature=False)


@pytest.mark.parametrize("field", ["not_before", "changed_at"])
def test_a_revocation_cannot_take_effect_in_the_future(field) -> None:
    later = datetime.now(UTC) + timedelta(days=1)
    event = (
        SubjectOffboarded(subject=AGENT, not_before=later, expires_at=in_seconds(3600))
        if field == "not_before"
        else ClaimsChanged(subject=AGENT, changed_at=later, expires_at=in_seconds(3600))
    )
    with pytest.raises(SchemaViolationError, match=f"^event.{field} .* later than") as info:
        Envelope.wrap(event, issuer="x")
    assert info.value.field == f"event.{field}"
    # Within the clock-skew allowance it is accepted.
    near = datetime.now(UTC) + timedelta(minutes=1)
    ok = SubjectOffboarded(subject=AGENT, not_before=near, expires_at=in_seconds(3600))
    assert Envelope.wrap(ok, issuer="x").event == ok


def test_a_future_not_before_on_the_topic_is_a_schema_violation() -> None:
    raw = _valid_raw()
    raw["event"] = json.loads(
        SubjectOffboarded(
            subject=AGENT, not_before=datetime(2099, 1, 1, tzinfo=UTC), expires_at=in_seconds(60)
        ).model_dump_json()
    )
    with pytest.raises(SchemaViolationError, match="not_before"):
        decode(_unsigned(raw), None, require_signature=False)


@pytest.mark.parametrize("data", [b"\x00\x01garbage", b"\xff" * 64, b"hello world", b"[1,2]"])
def test_random_bytes_are_undecodable_not_unsigned(data, trusted_keys) -> None:
    with pytest.raises(UndecodableEventError):
        decode(data, trusted_keys, require_signature=True)


def test_deep_json_is_undecodable_not_a_crash() -> None:
    with pytest.raises(UndecodableEventError, match="nests too deeply"):
        decode(b"[" * 100_000 + b"]" * 100_000, None, require_signature=False)


def test_source_records_where_a_revocation_came_from() -> None:
    from schemas import Source

    src = Source(channel="ssf", origin="https://idp.example", ref="jti-1", txn="t-9")
    event = SessionRevoked(
        subject=AGENT, session_id="s-1", expires_at=in_seconds(60), source=src
    )
    env = Envelope.wrap(event, issuer="x")
    assert decode(_unsigned(json.loads(env.model_dump_json())), None, require_signature=False)
    with pytest.raises(ValueError, match="channel"):
        Source(channel="Not A Channel")


# ------------------------------------------------------------ batch records, watermarks


def test_a_batch_record_carries_many_events_under_one_signature(signing_key, trusted_keys) -> None:
    from schemas import decode_records, encode_batch

    envs = [Envelope.wrap(e, issuer="x") for e in all_events()]
    data = encode_batch(envs, signing_key)
    assert data.count(b".") == 2  # one JWS
    assert decode_records(data, trusted_keys) == envs
    # A single-event record reads as a list of one; decode() refuses a batch.
    assert decode_records(encode(envs[0], signing_key), trusted_keys) == [envs[0]]
    with pytest.raises(SchemaViolationError, match="batch record"):
        decode(data, trusted_keys)


def test_a_tampered_or_partly_invalid_batch_is_refused_whole(signing_key, trusted_keys) -> None:
    from schemas import decode_records, encode_batch

    envs = [Envelope.wrap(e, issuer="x") for e in all_events()]
    data = encode_batch(envs, signing_key)
    head, payload, sig = data.split(b".")
    tampered = b".".join([head, payload[:-4] + b"AAAA", sig])
    with pytest.raises((BadSignatureError, UndecodableEventError)):
        decode_records(tampered, trusted_keys)
    raw = json.loads(encode_batch(envs, None))
    raw["events"][2]["event"]["subject"]["id"] = "bad\nid"
    with pytest.raises(SchemaViolationError, match=r"events\.2"):
        decode_records(signing_key.sign(json.dumps(raw).encode()), trusted_keys)
    raw["events"] = raw["events"] * 200
    with pytest.raises(SchemaViolationError, match="at most"):
        decode_records(signing_key.sign(json.dumps(raw).encode()), trusted_keys)


def test_a_watermark_signature_is_never_an_event_signature(signing_key, trusted_keys) -> None:
    import time

    from schemas import Watermark

    now = time.time_ns()
    mark = Watermark(
        service="orders", instance="orders-1", topic="t", offsets={0: 3},
        applied_at_ns=now, started_at_ns=now, ready=True,
    )  # fmt: skip
    data = mark.to_bytes(signing_key)
    assert Watermark.from_bytes(data, trusted_keys, require_signature=True) == mark
    with pytest.raises(BadSignatureError, match="typ"):
        decode(data, trusted_keys)
    with pytest.raises(MissingSignatureError):
        Watermark.from_bytes(mark.to_bytes(None), trusted_keys, require_signature=True)
    forged = Watermark.model_validate({**mark.model_dump(), "offsets": {0: 10**6}})
    other = SigningKey.generate("not-a-service")
    with pytest.raises(UnknownKeyError):
        Watermark.from_bytes(forged.to_bytes(other), trusted_keys, require_signature=True)
    assert mark.covers(0, 2)
    assert not mark.covers(0, 3)
