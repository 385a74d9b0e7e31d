"""Ed25519 checks through libsodium (PyNaCl) for the consumer's hot loop.

The consumer verifies one Ed25519 signature per record; on the machines this
project is measured on, libsodium's check costs about half of ``cryptography``'s
(37 µs against 60 µs idle). :func:`sodium_keys` returns a :class:`schemas.KeySet`
that trusts the same keys by the same ``kid`` and runs the *same*
:meth:`schemas.KeySet.verify` (JWS parsing, ``alg``, ``typ``, ``crit``, ``kid``
checks, error classes and messages): only the final signature check is libsodium's.

Guarantee: for every signature made by a key's holder, and for every altered
signing input or signature, the verdict is the same as ``cryptography``'s
(``tests/consumers/test_consumers_sodium.py`` compares them on valid, tampered,
truncated, re-keyed and random inputs and the RFC 8032 vectors). Where the two
libraries differ at all, libsodium is the stricter (it refuses non-canonical
signatures and small-order public keys, which only a key's holder could craft):
a difference can dead-letter a record, never apply one that ``cryptography``
would refuse.

Without PyNaCl (``pip install 'revocast[fast]'`` brings it) the keys are used as given.
"""

from __future__ import annotations

from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jwt.utils import base64url_decode

from schemas import KeySet

__all__ = ["SODIUM", "sodium_keys"]

try:
    from nacl.bindings import crypto_sign_open
    from nacl.exceptions import BadSignatureError as _SodiumRefused

    SODIUM = True
except ImportError:  # PyNaCl is optional
    SODIUM = False


class _SodiumKey:
    """An Ed25519 public key whose ``verify`` runs in libsodium; anything else is the
    ``cryptography`` key's."""

    __slots__ = ("_key", "_raw")

    def __init__(self, key: Ed25519PublicKey, raw: bytes) -> None:
        self._key = key
        self._raw = raw

    def verify(self, signature: bytes, data: bytes) -> None:
        if len(signature) != 64:
            raise InvalidSignature
        try:
            crypto_sign_open(signature + data, self._raw)
        except _SodiumRefused:
            raise InvalidSignature from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._key, name)


def sodium_keys(keys: KeySet | None) -> KeySet | None:
    """The same trusted keys, checked by libsodium (``keys`` itself without PyNaCl)."""
    if keys is None or not SODIUM:
        return keys
    out: dict[str, Ed25519PublicKey] = {}
    for jwk in keys.to_jwks()["keys"]:
        raw = base64url_decode(jwk["x"])
        key = Ed25519PublicKey.from_public_bytes(raw)
        out[jwk["kid"]] = cast(Ed25519PublicKey, _SodiumKey(key, raw))
    return KeySet(out)
