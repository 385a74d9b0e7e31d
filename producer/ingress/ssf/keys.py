"""Fetching from a transmitter, bounded: its configuration metadata and its signing keys.

Guarantees:

* **Bounded.** Every request has a timeout (``http_timeout``) and every answer a size limit
  (``max_document_bytes``, read as a stream and cut off, never buffered whole); redirects are
  not followed, so a URL cannot be turned into a request to somewhere else.
* **TLS except on loopback.** URLs must be ``https://``; ``http://`` is accepted only for
  loopback hosts (127.0.0.0/8, ::1, localhost), for tests and a local transmitter.
* **The issuer is checked.** Configuration metadata whose ``issuer`` is not exactly the
  configured issuer is refused (SSF 1.0 §7.2.3), and so are its keys.
* **Only asymmetric signing keys, each for its own algorithm.** RS256 takes an RSA key,
  ES256 a P-256 key, EdDSA an Ed25519 key; a JWK's ``alg`` (when present) must equal the
  SET's, its ``use`` (when present) must be ``sig``. Symmetric (``oct``) keys are never used:
  HMAC with a public key as the secret is impossible by construction.
* **Rotation.** A ``kid`` not in the cached set triggers one refetch, at most every
  ``jwks_min_refresh`` seconds (an attacker cannot make the receiver hammer the transmitter);
  a fetched set is reused for ``jwks_max_age`` seconds, and kept (with a warning, retried
  every ``jwks_min_refresh``) while a refresh fails: a JWKS endpoint that is down does not
  stop revocations signed with keys already known.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWKError

from producer.ingress.ssf.exceptions import SetRejected, TransmitterUnavailableError, escape
from producer.ingress.ssf.settings import TransmitterConfig

__all__ = ["ALGORITHMS", "TransmitterKeys", "check_url", "fetch_configuration", "request_json"]

log = logging.getLogger(__name__)

#: The only SET signature algorithms accepted, and the key each needs (kty, crv).
ALGORITHMS: Final[dict[str, tuple[str, str | None]]] = {
    "RS256": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "EdDSA": ("OKP", "Ed25519"),
}


def check_url(url: str, what: str) -> str:
    """``url`` when it is https, or http to a loopback host; a ConfigError-like refusal else."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and _loopback(host):
        return url
    raise TransmitterUnavailableError(
        f"{what} {url[:200]!r} must use https (http only to a loopback address)"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def request_json(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    what: str,
    max_bytes: int,
    token: str | None = None,
    body: Any = None,
    expect: tuple[int, ...] = (200,),
) -> tuple[int, Any]:
    """One bounded request to a transmitter: ``(status, parsed JSON or None)``.

    Raises :class:`TransmitterUnavailableError` (retriable) when the transmitter cannot be
    reached, answers with a status not in ``expect``, or sends more than ``max_bytes`` or
    something that is not JSON.
    """
    check_url(url, what)
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with http.stream(
            method,
            url,
            headers=headers,
            json=body,
            follow_redirects=False,
        ) as response:
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise TransmitterUnavailableError(
                        f"{what}: answer larger than {max_bytes} bytes (limit "
                        "REVOCAST_SSF_MAX_DOCUMENT_BYTES)"
                    )
                chunks.append(chunk)
            status = response.status_code
    except httpx.HTTPError as exc:
        raise TransmitterUnavailableError(f"{what}: {type(exc).__name__}: {exc}") from None
    raw = b"".join(chunks)
    if status not in expect:
        detail = raw[:200].decode("utf-8", "replace").encode("unicode_escape").decode()
        raise TransmitterUnavailableError(f"{what}: HTTP {status}: {detail}")
    if not raw.strip():
        return status, None
    try:
        return status, json.loads(raw)
    except ValueError:
        raise TransmitterUnavailableError(f"{what}: the answer is not JSON") from None


def fetch_configuration(
    config: TransmitterConfig, http: httpx.Client, *, max_bytes: int
) -> dict[str, Any]:
    """The transmitter's configuration metadata, with its ``issuer`` checked."""
    _, doc = request_json(
        http,
        "GET",
        config.discovery_url,
        what=f"transmitter {config.name} configuration",
        max_bytes=max_bytes,
    )
    if not isinstance(doc, dict):
        raise TransmitterUnavailableError(
            f"transmitter {config.name} configuration is not a JSON object"
        )
    if doc.get("issuer") != config.issuer:
        raise TransmitterUnavailableError(
            f"transmitter {config.name} configuration names issuer "
            f"{str(doc.get('issuer'))[:200]!r}, not the configured {config.issuer!r}: refused"
        )
    return doc


class TransmitterKeys:
    """The signing keys of one transmitter: inline, from ``jwks_url``, or by discovery."""

    def __init__(
        self,
        config: TransmitterConfig,
        http: httpx.Client,
        *,
        max_bytes: int = 256 * 1024,
        min_refresh: float = 30.0,
        max_age: float = 3600.0,
    ) -> None:
        self.config = config
        self._http = http
        self._max_bytes = max_bytes
        self._min_refresh = min_refresh
        self._max_age = max_age
        self._lock = threading.Lock()
        self._keys: list[dict[str, Any]] = []
        self._fetched_at: float | None = None
        if config.jwks is not None:
            self._keys = _usable(config.jwks, config.name)
            self._fetched_at = float("inf")

    def _fetch(self) -> list[dict[str, Any]]:
        url = self.config.jwks_url
        if url is None:
            doc = fetch_configuration(self.config, self._http, max_bytes=self._max_bytes)
            jwks_uri = doc.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise TransmitterUnavailableError(
                    f"transmitter {self.config.name} configuration has no jwks_uri"
                )
            url = jwks_uri
        _, jwks = request_json(
            self._http,
            "GET",
            url,
            what=f"transmitter {self.config.name} JWKS",
            max_bytes=self._max_bytes,
        )
        if not isinstance(jwks, dict):
            raise TransmitterUnavailableError(f"transmitter {self.config.name} JWKS is not a set")
        return _usable(jwks, self.config.name)

    def key_for(self, kid: str | None, alg: str) -> Any:
        """The public key object to verify a SET with ``kid``/``alg``; refuses otherwise.

        :class:`SetRejected` ``invalid_key`` when no usable key matches;
        :class:`TransmitterUnavailableError` when the keys cannot be fetched.
        """
        if alg not in ALGORITHMS:
            raise SetRejected(
                "invalid_key",
                f"alg {alg[:20]!r} is not accepted: SETs must be signed with "
                f"{', '.join(ALGORITHMS)} (never none, never HMAC)",
            )
        with self._lock:
            now = time.monotonic()
            stale = self._fetched_at is None or now - self._fetched_at > self._max_age
            if stale:
                try:
                    self._keys = self._fetch()
                    self._fetched_at = now
                except TransmitterUnavailableError as exc:
                    if not self._keys:
                        raise
                    # the keys we have stay good until the transmitter answers again
                    log.warning(
                        "transmitter %s: JWKS refresh failed, using the cached keys: %s",
                        self.config.name,
                        exc,
                    )
                    self._fetched_at = now - self._max_age + self._min_refresh
            found = self._match(kid)
            if (
                found is None
                and self.config.jwks is None
                and self._fetched_at is not None
                and now - self._fetched_at >= self._min_refresh
            ):
                log.info(
                    "transmitter %s: kid %r unknown, refetching its JWKS",
                    self.config.name,
                    escape(kid),
                )
                self._keys = self._fetch()
                self._fetched_at = now
                found = self._match(kid)
        if found is None:
            raise SetRejected(
                "invalid_key",
                f"kid {escape(kid)!r} is not a signing key of transmitter {self.config.name}",
            )
        kty, crv = ALGORITHMS[alg]
        if found.get("kty") != kty or (crv is not None and found.get("crv") != crv):
            raise SetRejected(
                "invalid_key",
                f"kid {escape(kid)!r} is a {found.get('kty')} key; {alg} needs {kty}"
                + (f" {crv}" if crv else ""),
            )
        if found.get("alg") not in (None, alg):
            raise SetRejected(
                "invalid_key", f"kid {escape(kid)!r} is for {found.get('alg')}, not {alg}"
            )
        try:
            return PyJWK(found, algorithm=alg).key
        except PyJWKError as exc:
            raise SetRejected("invalid_key", f"kid {escape(kid)!r} is unusable: {exc}") from None

    def _match(self, kid: str | None) -> dict[str, Any] | None:
        if kid is None:
            return self._keys[0] if len(self._keys) == 1 else None
        for key in self._keys:
            if key.get("kid") == kid:
                return key
        return None


def _usable(jwks: dict[str, Any], name: str) -> list[dict[str, Any]]:
    keys = jwks.get("keys")
    if not isinstance(keys, list) or len(keys) > 100:
        raise TransmitterUnavailableError(
            f"transmitter {name} JWKS must hold a 'keys' list of at most 100 keys"
        )
    usable = [
        k
        for k in keys
        if isinstance(k, dict)
        and k.get("kty") in {"RSA", "EC", "OKP"}
        and k.get("use") in (None, "sig")
        and "d" not in k  # a private key published by mistake is not trusted either
    ]
    return usable
