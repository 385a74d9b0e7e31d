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

Keys from a JWKS URL (:class:`RemoteKeys`, or a :class:`jwt.PyJWKClient` handed in,
which is wrapped in one) are fetched in a worker thread with a short timeout,
never on the caller's event loop: :meth:`Verifier.averify` (what the ASGI
middleware calls) awaits a fetch only for a ``kid`` it has never seen, and the
cached keys keep serving every other token meanwhile.

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

import asyncio
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent import futures
from concurrent.futures import Future
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
from consumers.state import DEFAULT_TENANT_CLAIM, RevocationState, Verdict
from schemas import ConfigError
from schemas.signing import fetch_jwks

__all__ = [
    "RemoteKeys",
    "VerifiedToken",
    "Verifier",
    "averify_request",
    "bearer_token",
    "verify_request",
]

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


class RemoteKeys:
    """Token-signing keys from a JWKS URL, fetched off the event loop, cached meanwhile.

    * A known ``kid`` is answered from the cache at once. When the cache is older
      than ``refresh_interval`` a refresh starts in a worker thread (at most one
      every ``min_refetch_interval`` seconds, so a failing IdP is not asked on
      every request) and the cached key is still served.
    * An unknown ``kid`` starts a refresh (at most one every
      ``min_refetch_interval`` seconds, so tokens with made-up kids cannot make
      the verifier hammer the IdP) and waits for it at most ``timeout`` seconds:
      :meth:`get` blocks the calling thread, :meth:`aget` awaits and the event
      loop keeps serving. One fetch runs at a time, whoever asked.
    * A failed fetch keeps the cached keys. A key that cannot be had because the
      endpoint failed or is slow is :class:`KeysUnavailableError` (503, not the
      client's fault); a kid the endpoint does not list is ``unknown_key`` (401).
    * A URL is fetched with :func:`schemas.signing.fetch_jwks`: at most 1 MiB,
      same-scheme redirects only, a warning for plain http off loopback. A
      :class:`jwt.PyJWKClient` handed in keeps its own fetching.

        keys = RemoteKeys("https://idp.example/.well-known/jwks.json", timeout=2.0)
        verifier = Verifier(keys, algorithms=["RS256"], state=consumer.state)
    """

    def __init__(
        self,
        source: str | PyJWKClient,
        *,
        timeout: float = 2.0,
        refresh_interval: float = 300.0,
        min_refetch_interval: float = 10.0,
    ) -> None:
        if not timeout > 0 or not refresh_interval > 0 or min_refetch_interval < 0:
            raise ConfigError("RemoteKeys: timeout and refresh_interval must be positive")
        if isinstance(source, str) and not source.startswith(("https://", "http://")):
            raise ConfigError(f"JWKS URL must be http(s): {source!r}")
        self._source = source
        self.timeout = timeout
        self.refresh_interval = refresh_interval
        self.min_refetch_interval = min_refetch_interval
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = -math.inf  # monotonic time of the last successful fetch
        self._attempted_at = -math.inf
        self._lock = threading.Lock()
        self._inflight: Future[None] | None = None
        self.last_error: str | None = None

    @property
    def kids(self) -> list[str]:
        return sorted(self._keys)

    def refresh(self) -> Future[None]:
        """Start a fetch in a worker thread unless one runs; the future ends with it."""
        with self._lock:
            if self._inflight is not None and not self._inflight.done():
                return self._inflight
            self._attempted_at = time.monotonic()
            future: Future[None] = Future()
            future.set_running_or_notify_cancel()  # nobody may cancel a shared fetch
            self._inflight = future
        threading.Thread(
            target=self._fetch, args=(future,), name="revocast-jwks", daemon=True
        ).start()
        return future

    def _fetch(self, future: Future[None]) -> None:
        try:
            if isinstance(self._source, PyJWKClient):
                keys = self._source.get_signing_keys(refresh=True)
            else:  # bounded size, time and redirects, like revocast's own JWKS
                jwk_set = PyJWKSet.from_dict(fetch_jwks(self._source, timeout=self.timeout))
                keys = [k for k in jwk_set.keys if k.key_id and k.public_key_use in ("sig", None)]
            self._keys = {str(k.key_id): k for k in keys}
            self._fetched_at = time.monotonic()
            self.last_error = None
        except Exception as exc:  # any failure: keep the cached keys, say why
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("JWKS fetch failed (cached keys kept): %s", self.last_error)
        finally:
            future.set_result(None)

    def _plan(self, kid: str) -> tuple[PyJWK | None, Future[None] | None]:
        """The cached key, or the fetch to wait for (None: not worth waiting for one)."""
        key = self._keys.get(kid)
        now = time.monotonic()
        if key is not None:
            if (
                now - self._fetched_at > self.refresh_interval
                and now - self._attempted_at >= self.min_refetch_interval
            ):
                self.refresh()  # in the background; the cached key serves meanwhile
            return key, None
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            return None, inflight
        if now - self._attempted_at < self.min_refetch_interval:
            return None, None
        return None, self.refresh()

    def _after(self, kid: str) -> PyJWK:
        key = self._keys.get(kid)
        if key is not None:
            return key
        if self._fetched_at == -math.inf or self.last_error is not None:
            raise KeysUnavailableError(
                "token-signing keys cannot be fetched"
                + (f": {self.last_error}" if self.last_error else " in time")
            )
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            raise KeysUnavailableError("token-signing keys are being fetched: not in time")
        raise InvalidTokenError(f"kid {kid!r} is not a trusted signing key", reason="unknown_key")

    def get(self, kid: str) -> PyJWK:
        """The key for ``kid``, blocking this thread at most ``timeout`` seconds."""
        key, pending = self._plan(kid)
        if key is not None:
            return key
        if pending is not None:
            futures.wait([pending], timeout=self.timeout)
        return self._after(kid)

    async def aget(self, kid: str) -> PyJWK:
        """The key for ``kid``; awaits a fetch at most ``timeout`` seconds, never blocking."""
        key, pending = self._plan(kid)
        if key is not None:
            return key
        if pending is not None:
            # asyncio.wait never cancels what it waits for: the fetch is shared.
            await asyncio.wait([asyncio.wrap_future(pending)], timeout=self.timeout)
        return self._after(kid)


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
    HMAC secret), a ``{kid: key}`` mapping, a :class:`jwt.PyJWKSet`, a
    :class:`RemoteKeys` (a JWKS URL, fetched off the event loop), or a
    :class:`jwt.PyJWKClient` (wrapped in a :class:`RemoteKeys`).
    ``tenant_claim`` names the claim holding a token's tenant (``tid``,
    ``tenant``...): revocations about one tenant only meet tokens of that tenant.
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
        tenant_claim: str = DEFAULT_TENANT_CLAIM,
    ) -> None:
        algorithms = list(algorithms)
        if not algorithms:
            raise ConfigError("Verifier needs at least one allowed algorithm")
        if any(a.lower() == "none" for a in algorithms):
            raise ConfigError("the 'none' algorithm is never allowed")
        unknown = set(algorithms) - set(jwt.algorithms.get_default_algorithms())
        if unknown:
            raise ConfigError(f"unknown JWT algorithms: {', '.join(sorted(unknown))}")
        if isinstance(key, PyJWKClient):
            key = RemoteKeys(key)
        single_key = not isinstance(key, (Mapping, PyJWKSet, RemoteKeys))
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
        self.tenant_claim = tenant_claim

    def _resolve_key(self, header: Mapping[str, Any]) -> Any:
        key = self._key
        if isinstance(key, (RemoteKeys, PyJWKSet, Mapping)):
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise InvalidTokenError("the token header has no kid", reason="unknown_key")
            if isinstance(key, RemoteKeys):
                return key.get(kid)
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
        """The verified token, or a :class:`TokenRejected` saying why not.

        With :class:`RemoteKeys` this may block the calling thread while an
        unknown kid is fetched (at most their ``timeout``): in async code call
        :meth:`averify`.
        """
        try:
            header = self._header(token)
            return self._decide(token, header, self._resolve_key(header), privileged, now)
        except TokenRejected as exc:
            self._log(exc, privileged)
            raise

    async def averify(
        self, token: str, *, privileged: bool = False, now: float | None = None
    ) -> VerifiedToken:
        """:meth:`verify` for an event loop: a JWKS fetch is awaited, never blocking it."""
        try:
            header = self._header(token)
            kid = header.get("kid")
            if isinstance(self._key, RemoteKeys) and isinstance(kid, str) and kid:
                key = await self._key.aget(kid)
            else:
                key = self._resolve_key(header)
            return self._decide(token, header, key, privileged, now)
        except TokenRejected as exc:
            self._log(exc, privileged)
            raise

    @staticmethod
    def _log(exc: TokenRejected, privileged: bool) -> None:
        log.info(
            "token rejected: %s",
            exc.reason,
            extra=log_extra(reason=exc.reason, status=exc.status, privileged=privileged),
        )

    def _header(self, token: str) -> dict[str, Any]:
        if not isinstance(token, str) or token.count(".") != 2:
            raise InvalidTokenError("the token is not a compact JWS", reason="malformed")
        try:
            header: dict[str, Any] = jwt.get_unverified_header(token)
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
        return header

    def _decide(
        self,
        token: str,
        header: Mapping[str, Any],
        key: Any,
        privileged: bool,
        now: float | None,
    ) -> VerifiedToken:
        alg = header["alg"]
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
        decision = self.state.check(claims, header, now, tenant_claim=self.tenant_claim)
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


async def averify_request(
    verifier: Verifier, authorization_header: str | None, privileged: bool = False
) -> VerifiedToken:
    """:func:`verify_request` for async frameworks: never blocks the event loop."""
    return await verifier.averify(bearer_token(authorization_header), privileged=privileged)
