"""SET validation (RFC 8417 as profiled by SSF 1.0 §4.1): every check, in order, fail closed.

A SET is accepted only when all of these hold; the first that fails raises
:class:`~producer.ingress.ssf.exceptions.SetRejected` with the RFC 8935 ``err`` code:

1. at most ``max_set_bytes``, ASCII, a compact JWS (three parts; an encrypted SET is
   refused) — ``invalid_request``;
2. header ``typ`` is ``secevent+jwt`` (or ``application/secevent+jwt``), no ``crit`` —
   ``invalid_request``;
3. ``alg`` is RS256, ES256 or EdDSA (never ``none``, never HMAC), the ``kid`` names a key of
   *this* transmitter's JWKS of the matching type, and the signature verifies with it
   (pyjwt) — ``invalid_key``;
4. ``iss`` is exactly the transmitter's issuer — ``invalid_issuer``;
5. ``aud`` contains one of the configured audiences — ``invalid_audience``;
6. ``iat`` lies within [now - ``max_set_age``, now + ``clock_skew``] and 2000..2100; ``jti``
   is 1..256 printable characters; no ``exp`` and no ``sub`` (SSF 1.0 §4.1.3); ``events``
   holds 1..8 objects keyed by URIs; ``txn`` and ``toe`` are bounded — ``invalid_request``.

Nothing here reads the subject or decides what to apply: that is
:mod:`producer.ingress.ssf.mapping`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import jwt

from producer.ingress.ssf.exceptions import SetRejected, escape
from producer.ingress.ssf.keys import TransmitterKeys
from producer.ingress.ssf.settings import TransmitterConfig
from schemas import MAX_TIME, MIN_TIME

__all__ = ["MAX_EVENTS_PER_SET", "SetValidator", "ValidatedSet"]

MAX_EVENTS_PER_SET: Final = 8
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f-\x9f]{1,256}$")
_TYPES = frozenset({"secevent+jwt", "application/secevent+jwt"})


@dataclass(frozen=True)
class ValidatedSet:
    """A SET whose signature and claims were checked; its payload is still outside input."""

    transmitter: TransmitterConfig
    jti: str
    iat: datetime
    txn: str | None
    toe: datetime | None
    sub_id: Any
    events: dict[str, dict[str, Any]]
    alg: str
    kid: str | None
    received_at: datetime


def _time(value: Any, name: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SetRejected("invalid_request", f"{name} must be a number of seconds")
    if not MIN_TIME.timestamp() <= value < MAX_TIME.timestamp():
        raise SetRejected("invalid_request", f"{name} {value!r} lies outside 2000..2100")
    return datetime.fromtimestamp(value, tz=UTC)


class SetValidator:
    """Validates SETs of one transmitter. ``keys`` resolves its signing keys."""

    def __init__(
        self, config: TransmitterConfig, keys: TransmitterKeys, *, max_set_bytes: int
    ) -> None:
        self.config = config
        self.keys = keys
        self.max_set_bytes = max_set_bytes

    def validate(self, token: bytes | str, *, now: datetime | None = None) -> ValidatedSet:
        received = now or datetime.now(UTC)
        raw = token.encode() if isinstance(token, str) else token
        if len(raw) > self.max_set_bytes:
            raise SetRejected(
                "invalid_request", f"the SET is larger than {self.max_set_bytes} bytes"
            )
        try:
            text = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise SetRejected("invalid_request", "the SET is not ASCII: not a JWS") from None
        parts = text.count(".")
        if parts == 4:
            raise SetRejected("invalid_request", "encrypted SETs (JWE) are not accepted")
        if parts != 2:
            raise SetRejected("invalid_request", "the SET is not a compact JWS")
        try:
            header = jwt.get_unverified_header(text)
        except jwt.PyJWTError:
            raise SetRejected("invalid_request", "the SET header cannot be decoded") from None
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in _TYPES:
            raise SetRejected(
                "invalid_request",
                f"header typ {escape(typ, 40)!r} is not secevent+jwt (RFC 8417 §2.3)",
            )
        if "crit" in header:
            raise SetRejected("invalid_request", "header crit is not supported")
        alg = header.get("alg")
        kid = header.get("kid")
        if not isinstance(alg, str):
            raise SetRejected("invalid_key", "header alg is missing")
        if kid is not None and not (isinstance(kid, str) and _PRINTABLE.match(kid)):
            raise SetRejected("invalid_key", "header kid is not a printable string")
        key = self.keys.key_for(kid, alg)
        try:
            claims: dict[str, Any] = jwt.decode(
                text,
                key,
                algorithms=[alg],
                issuer=self.config.issuer,
                audience=list(self.config.audience),
                options={
                    "require": ["iss", "aud", "iat", "jti"],
                    "verify_iat": False,  # checked below against the configured window
                    "verify_exp": False,  # exp must be absent: refused below
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise SetRejected(
                "invalid_key", f"the signature does not verify with kid {escape(kid)!r}"
            ) from None
        except jwt.InvalidIssuerError:
            raise SetRejected(
                "invalid_issuer", f"iss is not the issuer of transmitter {self.config.name}"
            ) from None
        except jwt.InvalidAudienceError:
            raise SetRejected(
                "invalid_audience", "aud names none of this receiver's audiences"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise SetRejected("invalid_request", f"claim {exc.claim} is missing") from None
        except jwt.PyJWTError as exc:
            raise SetRejected("invalid_request", f"the SET is invalid: {exc}") from None
        return self._claims(claims, received, alg, kid)

    def _claims(
        self, claims: dict[str, Any], received: datetime, alg: str, kid: str | None
    ) -> ValidatedSet:
        jti = claims["jti"]
        if not isinstance(jti, str) or not _PRINTABLE.match(jti):
            raise SetRejected("invalid_request", "jti must be 1..256 printable characters")
        iat = _time(claims["iat"], "iat")
        cfg = self.config
        if iat < received - cfg.max_set_age:
            raise SetRejected(
                "invalid_request",
                f"iat {iat.isoformat()} is older than {_span(cfg.max_set_age)}: expired",
            )
        if iat > received + cfg.clock_skew:
            raise SetRejected(
                "invalid_request",
                f"iat {iat.isoformat()} is more than {_span(cfg.clock_skew)} in the future",
            )
        for forbidden in ("exp", "sub"):
            if forbidden in claims:
                raise SetRejected(
                    "invalid_request", f"a SET must not carry {forbidden} (SSF 1.0 §4.1.3)"
                )
        events = claims.get("events")
        if not isinstance(events, dict) or not 1 <= len(events) <= MAX_EVENTS_PER_SET:
            raise SetRejected(
                "invalid_request", f"events must be an object of 1..{MAX_EVENTS_PER_SET} events"
            )
        for uri, payload in events.items():
            if len(uri) > 512 or not _PRINTABLE.match(uri[:256]):
                raise SetRejected("invalid_request", "an event type URI is not printable")
            if not isinstance(payload, dict):
                raise SetRejected("invalid_request", f"event {escape(uri)} must be a JSON object")
        txn = claims.get("txn")
        if txn is not None and not (isinstance(txn, str) and _PRINTABLE.match(txn)):
            raise SetRejected("invalid_request", "txn must be 1..256 printable characters")
        toe = _time(claims["toe"], "toe") if "toe" in claims else None
        if toe is None:
            stamps = [p["event_timestamp"] for p in events.values() if "event_timestamp" in p]
            toe = _time(stamps[0], "event_timestamp") if stamps else None
        return ValidatedSet(
            transmitter=cfg,
            jti=jti,
            iat=iat,
            txn=txn,
            toe=toe,
            sub_id=claims.get("sub_id"),
            events=events,
            alg=alg,
            kid=kid,
            received_at=received,
        )


def _span(delta: timedelta) -> str:
    return f"{int(delta.total_seconds())} s"
