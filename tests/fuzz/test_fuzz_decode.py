"""``schemas.decode`` under random input: only an Envelope or an InvalidEventError, ever.

Bytes, JSON structures shaped like envelopes, and well-signed JWS around random payloads
(a signer's mistakes must be refused as cleanly as an attacker's noise)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from schemas import Envelope, InvalidEventError, KeySet, SigningKey, decode
from schemas.exceptions import UndecodableEventError

KEY = SigningKey.generate("fuzz")
KEYS = KeySet.of([KEY])
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
_time = (
    st.integers(min_value=-(10**20), max_value=10**420)
    | st.sampled_from(
        ["2100-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+00:00", "nope"]
    )
    | _json
)
_subject = st.fixed_dictionaries(
    {"id": st.text(max_size=300) | _json, "kind": st.sampled_from(["human", "ai_agent", "x"])},
    optional={"tenant": st.text(max_size=10) | _json},
)
_event = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "session.revoked",
                "token.revoked",
                "subject.offboarded",
                "claims.changed",
                "credential.rotated",
                "heartbeat",
                "nope",
            ]
        ),
    },
    optional={
        "subject": _subject,
        "session_id": st.text(max_size=300),
        "jti": st.text(max_size=20),
        "expires_at": _time,
        "not_before": _time,
        "changed_at": _time,
        "claims": _json,
        "credential_id": st.text(max_size=20),
        "credential_kind": st.sampled_from(["kid", "client_id", "x"]),
        "partition": st.integers(min_value=-5, max_value=10**30),
        "emitter": st.text(max_size=20),
    },
)
_envelope = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 1, 2, "1", None])},
    optional={
        "event_id": st.sampled_from([str(uuid.uuid4()), str(uuid.uuid1()), "x"]) | _json,
        "published_at_ns": _time,
        "issuer": st.text(max_size=300) | _json,
        "event": _event | _json,
        "extra": _json,
    },
)


def _decode_only_documented(data: bytes, **kwargs: Any) -> None:
    try:
        result = decode(data, KEYS, **kwargs)
    except InvalidEventError:
        return
    assert isinstance(result, Envelope)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    _decode_only_documented(data)
    _decode_only_documented(data, require_signature=False)


@FUZZ
@given(_json | _envelope)
def test_random_json_unsigned(value: Any) -> None:
    data = json.dumps(value).encode()
    _decode_only_documented(data, require_signature=False)
    _decode_only_documented(data)


@FUZZ
@given(_envelope | _json)
def test_validly_signed_random_payloads(value: Any) -> None:
    _decode_only_documented(KEY.sign(json.dumps(value).encode()))


@FUZZ
@given(_json, st.binary(max_size=80), st.binary(max_size=80))
def test_random_jws_parts(header: Any, payload: bytes, signature: bytes) -> None:
    token = b".".join([_b64(json.dumps(header).encode()), _b64(payload), _b64(signature)])
    _decode_only_documented(token)


@FUZZ
@given(st.binary(min_size=1, max_size=200))
def test_garbage_is_undecodable_not_missing_signature(data: bytes) -> None:
    assume(not data.lstrip().startswith(b"{") and data.count(b".") != 2)
    with pytest.raises(UndecodableEventError):
        decode(data, KEYS)


@pytest.mark.parametrize("opener", [b"[", b'{"a":', b'{"v":1,"event":'])
def test_deeply_nested_signed_payloads_are_refused(opener: bytes) -> None:
    with pytest.raises(InvalidEventError):
        decode(KEY.sign(opener * 50_000), KEYS)
