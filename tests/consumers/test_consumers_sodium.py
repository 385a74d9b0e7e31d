"""libsodium's Ed25519 check gives the verdicts of cryptography's, input for input."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.exceptions import InvalidSignature
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.core_sodium import SODIUM, sodium_keys
from schemas import (
    WATERMARK_JWS_TYPE,
    Envelope,
    KeySet,
    SessionRevoked,
    SigningKey,
    Subject,
    encode,
    in_seconds,
)

KEY = SigningKey.generate("k1")
OTHER = SigningKey.generate("k1")  # same kid, another key
REFERENCE = KeySet.of([KEY, SigningKey.generate("k2")])
FAST = sodium_keys(REFERENCE)


def verdict(keys: KeySet | None, token: bytes, typ: str | None = None) -> tuple[str, object]:
    assert keys is not None
    try:
        if typ is None:
            return "ok", keys.verify(token)
        return "ok", keys.verify(token, typ=typ)
    except Exception as exc:
        return type(exc).__name__, str(exc)


def same(token: bytes, typ: str | None = None) -> None:
    assert verdict(FAST, token, typ) == verdict(REFERENCE, token, typ)


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def event(i: int) -> bytes:
    env = Envelope.wrap(
        SessionRevoked(subject=Subject(id=f"u{i}", kind="human"), session_id=f"s{i}",
                       expires_at=in_seconds(600)),
        issuer="tests",
    )  # fmt: skip
    return encode(env, KEY)


def test_pynacl_is_installed_with_the_test_extra() -> None:
    assert SODIUM, "PyNaCl is missing: pip install -e '.[test]' (or revocast[fast])"
    assert FAST is not REFERENCE
    assert FAST is not None
    assert FAST.kids == REFERENCE.kids



def test_valid_tokens_verify_to_the_same_payload() -> None:
    for i in range(50):
        token = event(i)
        assert verdict(FAST, token)[0] == "ok"
        same(token)
    mark = KEY.sign(b'{"type":"watermark"}', typ=WATERMARK_JWS_TYPE)
    same(mark, WATERMARK_JWS_TYPE)
    same(mark)  # a watermark's signature is not an event's: refused alike


def test_every_altered_byte_is_refused_alike() -> None:
    token = event(7)
    head, payload, sig = token.split(b".")
    raw_sig = base64.urlsafe_b64decode(sig + b"=" * (-len(sig) % 4))
    for i in range(len(raw_sig)):
        flipped = bytearray(raw_sig)
        flipped[i] ^= 0x01
        same(b".".join((head, payload, b64(bytes(flipped)))))
    raw_payload = base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4))
    for i in range(0, len(raw_payload), 7):
        changed = bytearray(raw_payload)
        changed[i] ^= 0x20
        same(b".".join((head, b64(bytes(changed)), sig)))
    for cut in (0, 1, 32, 63, 65):
        same(b".".join((head, payload, b64(raw_sig[:cut] if cut <= 64 else raw_sig + b"\0"))))
    same(b".".join((head, payload, b64(b"\0" * 64))))
    same(b".".join((head, payload, b64(b"\xff" * 64))))


def test_other_keys_kids_algorithms_and_headers_are_refused_alike() -> None:
    same(encode(Envelope.model_validate_json(REFERENCE.verify(event(1))), OTHER))
    unknown = SigningKey.generate("nobody")
    same(unknown.sign(b"{}"))
    payload = b64(b"{}")
    sig = KEY.sign(b"{}").split(b".")[2]
    for header in (
        {"alg": "HS256", "kid": "k1"},
        {"alg": "EdDSA", "kid": "k1", "crit": ["exp"]},
        {"alg": "EdDSA", "kid": "k1", "b64": False},
        {"alg": "EdDSA"},
        {"alg": "EdDSA", "kid": "k1", "typ": "other+jws"},
        {"alg": "none", "kid": "k1"},
    ):
        same(b".".join((b64(json.dumps(header).encode()), payload, sig)))
    for garbage in (b"", b"..", b"a.b.c", b"\xff.\xfe.\xfd", b"x" * 100):
        same(garbage)


def test_rfc8032_vectors() -> None:
    # RFC 8032 section 7.1, TEST 1 (empty message) and TEST 2 (one byte), as raw checks.
    vectors = [
        ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
         "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39"
         "701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
        ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
         "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f36"
         "13d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ]  # fmt: skip
    for pk, msg, sig in vectors:
        jwks = {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "v",
                          "x": b64(bytes.fromhex(pk)).decode()}]}  # fmt: skip
        reference = KeySet.from_jwks(jwks)
        fast = sodium_keys(reference)
        assert fast is not None
        for keys in (reference, fast):
            key = keys._keys["v"]
            key.verify(bytes.fromhex(sig), bytes.fromhex(msg))  # raises when refused
            with pytest.raises(InvalidSignature):
                key.verify(bytes.fromhex(sig), bytes.fromhex(msg) + b"!")


@settings(max_examples=300, deadline=None)
@given(sig=st.binary(min_size=0, max_size=80), payload=st.binary(max_size=64))
def test_random_signatures_are_refused_alike(sig: bytes, payload: bytes) -> None:
    head = event(3).split(b".")[0]
    same(b".".join((head, b64(payload), b64(sig))))
