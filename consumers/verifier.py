"""Verify a bearer token, then ask the revocation view, then (if privileged) its freshness.

Order, and why:

1. **The token** (pyjwt): an allow-list of algorithms, never ``none``, never an
   ``HS*`` algorithm with an asymmetric key (the classic key-confusion attack:
   an attacker signs with the *public* key as an HMAC secret); signature;
   ``exp``/``nbf``/``iat`` with ``leeway``; ``iss`` and ``aud`` when configured
   (a token that has an ``aud`` is refused when no audience is configured:
   pyjwt's fail-closed default, kept on purpose).
2. **The revocation view**: :meth:`RevocationState.check`. A revoked token is
   refused even while the view is stale: facts only grow, so "revoked" is
   never wrong, only "allowed" can be out of date.
3. **Freshness**, for privileged requests only: if the view is not ready or
   older than ``max_staleness`` on any partition, refuse with 503 and say why.

Each refusal is a :class:`~consumers.exceptions.TokenRejected` carrying the HTTP
status, the OAuth error code and a reason; the token itself is never logged nor
put in an error message.

    verifier = Verifier(public_key, algorithms=["ES256"], state=consumer.state,
                        freshness=consumer, issuer="https://idp.example",
                        audience="orders-api", leeway=30)
    token = verify_request(verifier, request.headers.get("authorization"))
    token.claims["sub"]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet

from consumers.exceptions import (
    InvalidTokenError,
    KeysUnavailableError,
    MissingTokenError,
    RevokedTokenError,
    StaleClaimsError,
    StaleViewError,
    TokenRejected,
)
from consumers.freshness import FreshnessSource
from consumers.metrics import log_extra
from consumers.state import RevocationState, Verdict
from schemas import ConfigError

__all__ = ["VerifiedToken", "Verifier", "bearer_token", "verify_request"]

log = logging.getLogger(__name__)

_SYMMETRIC: Final = ("HS256", "HS384", "HS512")

# pyjwt's errors, most specific first, mapped to our stable reasons.
_REASONS: Final[tuple[tuple[type[jwt.PyJWTError], str, str], ...]] = (
    (jwt.ExpiredSignatureError, "expired", "the token has expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid", "the token is not valid yet (nbf/iat)"),
    (jwt.InvalidAudienceError, "bad_audience", "the token is not meant for this audience"),
    (jwt.InvalidIssuerError, "bad_issuer", "the token was issued by an untrusted issuer"),
    (jwt.MissingRequiredClaimError, "missing_claim", "the token lacks a required claim"),
    (jwt.InvalidIssuedAtError, "bad_iat", "the token's iat claim is invalid"),
    (jwt.InvalidSignatureError, "bad_signature", "the token signature does not verify"),
    (jwt.InvalidAlgorithmError, "alg_not_allowed", "the token's algorithm is not allowed"),
    (jwt.InvalidKeyError, "bad_key", "the key cannot verify this token"),
    (jwt.DecodeError, "malformed", "the token is malformed"),
)


def _is_asymmetric(key: Any) -> bool:
    """Whether ``key`` is a public/private key rather than an HMAC secret."""
    if isinstance(key, PyJWK):
        return key.key_type != "oct"
    if isinstance(key, str):
        key = key.encode()
    if isinstance(key, bytes):
        text = key.lstrip()
        return text.startswith((b"-----BEGIN", b"ssh-", b"ecdsa-sha2-")) or b"PUBLIC KEY" in text
    return True  # a cryptography key object


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token that passed every check. Holds claims and header, never the token."""

    claims: Mapping[str, Any]
    header: Mapping[str, Any]
    privileged: bool = False

    @property
    def subject(self) -> str | None:
        sub = self.claims.get("sub")
        return sub if isinstance(sub, str) else None


class Verifier:
    """pyjwt verification + revocation check + freshness guard, in that order.

    ``key`` is one of: a single key (a cryptography key object, PEM text, or an
    HMAC secret), a ``{kid: key}`` mapping, a :class:`jwt.PyJWKSet`, or a
    :class:`jwt.PyJWKClient` (a JWKS URL, fetched and cached by pyjwt).
    ``freshness`` is anything with ``denial(now) -> str | None``, e.g. a
    :class:`~consumers.consumer.RevocationConsumer`; without one, privileged
    requests are refused (fail closed).
    """

    def __init__(
        self,
        key: Any,
        *,
        algorithms: Sequence[str],
        state: RevocationState,
        freshness: FreshnessSource | None = None,
        issuer: str | Sequence[str] | None = None,
        audience: str | Sequence[str] | None = None,
        leeway: float = 0.0,
        require: Sequence[str] = ("exp", "iat"),
    ) -> None:
        algorithms = list(algorithms)
        if not algorithms:
            raise ConfigError("Verifier needs at least one allowed algorithm")
        if any(a.lower() == "none" for a in algorithms):
            raise ConfigError("the 'none' algorithm is never allowed")
        unknown = set(algorithms) - set(jwt.algorithms.get_default_algorithms())
        if unknown:
            raise ConfigError(f"unknown JWT algorithms: {', '.join(sorted(unknown))}")
        single_key = not isinstance(key, (Mapping, PyJWKSet, PyJWKClient))
        if single_key and _is_asymmetric(key) and any(a in _SYMMETRIC for a in algorithms):
            raise ConfigError(
                "HS* algorithms are not allowed with an asymmetric key (key confusion)"
            )
        self._key = key
        self.algorithms = tuple(algorithms)
        self.state = state
        self.freshness = freshness
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.require = tuple(require)

    def _resolve_key(self, token: str, header: Mapping[str, Any]) -> Any:
        key = self._key
        if isinstance(key, PyJWKClient):
            try:
                return key.get_signing_key_from_jwt(token)
            except jwt.PyJWKClientConnectionError as exc:
                raise KeysUnavailableError(f"signing keys cannot be fetched: {exc}") from None
            except jwt.PyJWTError:
                raise InvalidTokenError(
                    "the token's kid is not a trusted signing key", reason="unknown_key"
                ) from None
        if isinstance(key, (PyJWKSet, Mapping)):
            kid = header.get("kid")
            if not isinstance(kid, str):
                raise InvalidTokenError("the token header has no kid", reason="unknown_key")
            try:
                return key[kid]
            except KeyError:
                raise InvalidTokenError(
                    f"kid {kid!r} is not a trusted signing key", reason="unknown_key"
                ) from None
        return key

    def verify(
        self, token: str, *, privileged: bool = False, now: float | None = None
    ) -> VerifiedToken:
        """The verified token, or a :class:`TokenRejected` saying why not."""
        try:
            return self._verify(token, privileged, now)
        except TokenRejected as exc:
            log.info(
                "token rejected: %s",
                exc.reason,
                extra=log_extra(reason=exc.reason, status=exc.status, privileged=privileged),
            )
            raise

    def _verify(self, token: str, privileged: bool, now: float | None) -> VerifiedToken:
        if not isinstance(token, str) or token.count(".") != 2:
            raise InvalidTokenError("the token is not a compact JWS", reason="malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidTokenError(
                "the token header cannot be decoded", reason="malformed"
            ) from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none" or alg not in self.algorithms:
            raise InvalidTokenError(
                f"algorithm {alg!r} is not allowed (allowed: {', '.join(self.algorithms)})",
                reason="alg_not_allowed",
            )
        key = self._resolve_key(token, header)
        if alg in _SYMMETRIC and _is_asymmetric(key):
            raise InvalidTokenError(
                f"algorithm {alg} cannot be used with an asymmetric key",
                reason="alg_not_allowed",
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": list(self.require)},
            )
        except jwt.PyJWTError as exc:
            for kind, reason, description in _REASONS:
                if isinstance(exc, kind):
                    raise InvalidTokenError(description, reason=reason) from None
            raise InvalidTokenError("the token is invalid", reason="invalid_token") from None
        decision = self.state.check(claims, header, now)
        if decision.verdict is Verdict.REVOKED:
            raise RevokedTokenError(decision.detail, reason=str(decision.rule))
        if decision.verdict is Verdict.STALE_CLAIMS:
            raise StaleClaimsError(
                decision.detail,
                not_before=decision.since if decision.since is not None else time.time(),
            )
        if privileged:
            if self.freshness is None:
                raise StaleViewError("no freshness source is configured for privileged requests")
            denial = self.freshness.denial(now)
            if denial is not None:
                raise StaleViewError(denial)
        return VerifiedToken(claims=claims, header=header, privileged=privileged)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value."""
    if not authorization:
        raise MissingTokenError("no bearer token in the Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise MissingTokenError("the Authorization header does not use the Bearer scheme")
    token = token.strip()
    if not token:
        raise InvalidTokenError("the bearer token is empty", reason="malformed")
    return token


def verify_request(
    verifier: Verifier, authorization_header: str | None, privileged: bool = False
) -> VerifiedToken:
    """Verify the ``Authorization`` header of any framework's request.

    Raises a :class:`TokenRejected`: answer with its ``status`` and
    ``www_authenticate()``.
    """
    return verifier.verify(bearer_token(authorization_header), privileged=privileged)
