"""Test helpers for SSF: a transmitter's signing key and SETs signed with it.

For tests, the demo and the benchmark (structlog's ``structlog.testing`` idea): make a key of
each accepted algorithm, publish its JWKS, and sign SETs exactly as a transmitter does
(``typ: secevent+jwt``, ``kid``, ``sub_id``, one event).

    key = TransmitterKey.generate("ES256", kid="tx-1")
    token = session_revoked_set(key, iss="https://idp.example", aud="https://rc.example",
                                user="alice", session_id="s-42")
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from producer.ingress.ssf.vocabulary import CAEP

__all__ = ["TransmitterKey", "make_set", "session_revoked_set"]

SESSION_REVOKED = CAEP + "session-revoked"


@dataclass(frozen=True)
class TransmitterKey:
    """A transmitter's private signing key (RS256, ES256 or EdDSA) and its ``kid``."""

    alg: str
    kid: str
    private_key: Any

    @classmethod
    def generate(cls, alg: str = "EdDSA", kid: str | None = None) -> TransmitterKey:
        key: Any
        if alg == "RS256":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            key = ec.generate_private_key(ec.SECP256R1())
        elif alg == "EdDSA":
            key = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(f"unsupported alg {alg!r}: RS256, ES256 or EdDSA")
        return cls(alg=alg, kid=kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}", private_key=key)

    def public_jwk(self) -> dict[str, Any]:
        public = self.private_key.public_key()
        algo: Any = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}[self.alg]
        jwk: dict[str, Any] = algo.to_jwk(public, as_dict=True)
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return jwk

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}

    def sign(
        self,
        claims: dict[str, Any],
        *,
        typ: str = "secevent+jwt",
        headers: dict[str, Any] | None = None,
    ) -> str:
        header: dict[str, Any] = {"kid": self.kid, "typ": typ, **(headers or {})}
        return jwt.encode(claims, self.private_key, algorithm=self.alg, headers=header)


def make_set(
    *,
    iss: str,
    aud: str | list[str],
    events: dict[str, dict[str, Any]],
    sub_id: dict[str, Any] | None = None,
    jti: str | None = None,
    iat: float | None = None,
    txn: str | None = None,
) -> dict[str, Any]:
    """The claims of a SET (SSF 1.0 shape: ``sub_id`` at the top level)."""
    claims: dict[str, Any] = {
        "iss": iss,
        "aud": aud,
        "iat": int(time.time() if iat is None else iat),
        "jti": jti or uuid.uuid4().hex,
        "events": events,
    }
    if sub_id is not None:
        claims["sub_id"] = sub_id
    if txn is not None:
        claims["txn"] = txn
    return claims


def session_revoked_set(
    key: TransmitterKey,
    *,
    iss: str,
    aud: str | list[str],
    user: str | None = None,
    session_id: str | None = None,
    user_format: str = "iss_sub",
    jti: str | None = None,
    txn: str | None = None,
) -> str:
    """A signed CAEP session-revoked SET naming ``user`` and/or ``session_id``.

    The user is an ``iss_sub`` (with ``iss``), ``email`` or ``opaque`` identifier; with
    both, the subject is complex (``user`` + ``session``), as CAEP 1.0's examples are.
    """
    if user is None and session_id is None:
        raise ValueError("name a user, a session, or both")
    user_id: dict[str, Any] | None = None
    if user is not None:
        user_id = {
            "iss_sub": {"format": "iss_sub", "iss": iss, "sub": user},
            "email": {"format": "email", "email": user},
            "opaque": {"format": "opaque", "id": user},
        }[user_format]
    session = {"format": "opaque", "id": session_id} if session_id is not None else None
    if user_id is not None and session is not None:
        sub_id: dict[str, Any] = {"format": "complex", "user": user_id, "session": session}
    else:
        sub_id = user_id or {"format": "complex", "session": session}
    claims = make_set(
        iss=iss,
        aud=aud,
        events={
            SESSION_REVOKED: {"event_timestamp": int(time.time()), "initiating_entity": "admin"}
        },
        sub_id=sub_id,
        jti=jti,
        txn=txn,
    )
    return key.sign(claims)
