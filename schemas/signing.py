"""Signed events: Ed25519 JWS with a ``kid``, and the set of keys a consumer trusts.

An event on the wire is a compact JWS (``header.payload.signature``) whose payload
is the envelope's JSON. The header names the signing key (``kid``) and the
algorithm, which must be ``EdDSA``: a consumer never lets the token pick a weaker
algorithm, and never accepts ``none``.

Key material from outside is handled with bounds:

* :meth:`SigningKey.write_private` creates the private key file with mode 0600
  from its first byte (``O_CREAT|O_EXCL|O_NOFOLLOW``), never writes through a
  symbolic link, and with ``force`` replaces an old file by renaming a new one
  over it (the old inode, perhaps readable by others or linked elsewhere, never
  holds the key).
* :meth:`KeySet.from_url` (:func:`fetch_jwks`) reads at most :data:`MAX_JWKS_BYTES`, gives up after
  ``timeout`` seconds in all (not per read), follows at most
  :data:`MAX_REDIRECTS` redirects and only within the same scheme (never
  https to http, never to ``file:`` or ``ftp:``), and logs a warning for plain
  ``http://`` to anything but a loopback address.

Key rotation without downtime: publish the new public key in the JWKS next to the
old one, switch the producer to the new private key, and drop the old public key
once every event it signed has expired from the topic. During the overlap both
verify.

    key = SigningKey.generate("2026-11")
    trusted = KeySet.from_jwks({"keys": [key.public_jwk()]})
    payload = trusted.verify(key.sign(b'{"hello": 1}'))
"""

from __future__ import annotations

import binascii
import ipaddress
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

import httpx
import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm
from jwt.utils import base64url_decode

from schemas.exceptions import (
    BadSignatureError,
    ConfigError,
    MissingSignatureError,
    UndecodableEventError,
    UnknownKeyError,
)

__all__ = [
    "ALGORITHM",
    "JWS_TYPE",
    "MAX_JWKS_BYTES",
    "MAX_REDIRECTS",
    "KeySet",
    "SigningKey",
    "fetch_jwks",
]

log = logging.getLogger(__name__)

ALGORITHM = "EdDSA"
JWS_TYPE = "revocast-event+jws"

MAX_JWKS_BYTES: Final = 1024 * 1024
"""A JWKS larger than this is refused (a hundred keys take under 20 KiB)."""

MAX_REDIRECTS: Final = 3

_jws = jwt.PyJWS()


@dataclass(frozen=True)
class SigningKey:
    """A private Ed25519 key and the ``kid`` under which consumers know it."""

    kid: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls, kid: str) -> SigningKey:
        return cls(kid=kid, private_key=Ed25519PrivateKey.generate())

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> SigningKey:
        """Load a private OKP/Ed25519 JWK (it must have ``d`` and ``kid``)."""
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "d" not in jwk:
            raise ConfigError("signing key must be a private Ed25519 JWK (kty=OKP, crv=Ed25519, d)")
        if not jwk.get("kid"):
            raise ConfigError("signing key JWK has no 'kid': consumers could not pick the key")
        key = OKPAlgorithm.from_jwk(dict(jwk))
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError("signing key JWK is not an Ed25519 private key")
        return cls(kid=str(jwk["kid"]), private_key=key)

    @classmethod
    def from_file(cls, path: str | Path) -> SigningKey:
        try:
            return cls.from_jwk(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read signing key {path}: {exc}") from None

    def write_private(self, path: str | Path, *, force: bool = False) -> None:
        """Write :meth:`private_jwk` to a new file of mode 0600 (see the module docstring).

        Without ``force`` an existing ``path`` (a symbolic link included, even a
        dangling one) is a :class:`ConfigError`; with it, ``path`` is replaced.
        """
        path = Path(path)
        data = (json.dumps(self.private_jwk(), indent=2) + "\n").encode()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        target = path
        if force:
            target = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(target, flags, 0o600)
        except FileExistsError:
            raise ConfigError(
                f"{path} exists: refusing to overwrite a private key (--force replaces it)"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot create {path}: {exc.strerror}") from None
        try:
            os.fchmod(fd, 0o600)  # the umask may only have narrowed it; make it exact
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if force:
                os.replace(target, path)  # renames over a link, never through it
        except OSError as exc:
            if force:
                target.unlink(missing_ok=True)
            raise ConfigError(f"cannot write {path}: {exc.strerror}") from None

    def private_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = OKPAlgorithm.to_jwk(self.private_key, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = OKPAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}

    def sign(self, payload: bytes, *, typ: str = JWS_TYPE) -> bytes:
        """A compact JWS over ``payload``; ``typ`` says what it is (an event, a watermark)."""
        token = _jws.encode(
            payload,
            self.private_key,
            algorithm=ALGORITHM,
            headers={"kid": self.kid, "typ": typ},
        )
        return token.encode("ascii")


class KeySet:
    """The public keys a consumer trusts, by ``kid`` (a JWKS)."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey] | None = None) -> None:
        self._keys: dict[str, Ed25519PublicKey] = dict(keys or {})

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    @property
    def kids(self) -> list[str]:
        return sorted(self._keys)

    @classmethod
    def of(cls, keys: Iterable[SigningKey]) -> KeySet:
        """Trust the public halves of these signing keys (handy in tests)."""
        return cls({k.kid: k.private_key.public_key() for k in keys})

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> KeySet:
        keys = jwks.get("keys")
        if not isinstance(keys, list):
            raise ConfigError("JWKS must be an object with a 'keys' array")
        out: dict[str, Ed25519PublicKey] = {}
        for i, jwk in enumerate(keys):
            if not isinstance(jwk, dict) or not jwk.get("kid"):
                raise ConfigError(f"JWKS keys[{i}] has no 'kid'")
            if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
                raise ConfigError(f"JWKS keys[{i}] ({jwk['kid']}) is not an Ed25519 key")
            public = {k: v for k, v in jwk.items() if k != "d"}
            key = OKPAlgorithm.from_jwk(public)
            if not isinstance(key, Ed25519PublicKey):
                raise ConfigError(f"JWKS keys[{i}] ({jwk['kid']}) is not an Ed25519 public key")
            out[str(jwk["kid"])] = key
        return cls(out)

    @classmethod
    def from_file(cls, path: str | Path) -> KeySet:
        try:
            return cls.from_jwks(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read JWKS file {path}: {exc}") from None

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 5.0) -> KeySet:
        """Fetch a JWKS with :func:`fetch_jwks` (bounded size, time and redirects)."""
        return cls.from_jwks(fetch_jwks(url, timeout=timeout))

    @classmethod
    def load(cls, source: str) -> KeySet:
        """A JWKS from a URL (``http(s)://``) or a file path."""
        if source.startswith(("https://", "http://")):
            return cls.from_url(source)
        return cls.from_file(source)

    def to_jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                {**OKPAlgorithm.to_jwk(k, as_dict=True), "kid": kid, "alg": ALGORITHM, "use": "sig"}
                for kid, k in sorted(self._keys.items())
            ]
        }

    def verify(self, token: bytes, *, typ: str = JWS_TYPE) -> bytes:
        """The signed payload, or a :class:`SignatureError` that says why not.

        The header's ``typ`` must be ``typ`` (absent is accepted for events only), so
        a signature made for one kind of record (a watermark) is never accepted as
        another (an event), even where the same key is trusted for both.

        Compact JWS (RFC 7515) is parsed once here and the Ed25519 check made with
        ``cryptography`` directly: pyjwt's decode path parses the header twice and
        cost more than the signature check itself, halving a consumer's throughput.
        Signing still goes through pyjwt.
        """
        try:
            signing_input, _, sig_b64 = token.rpartition(b".")
            header_b64, _, payload_b64 = signing_input.partition(b".")
            header: Any = json.loads(base64url_decode(header_b64))
            signature = base64url_decode(sig_b64)
            payload = base64url_decode(payload_b64)
        except (ValueError, TypeError, binascii.Error) as exc:
            raise UndecodableEventError(f"not a compact JWS: {exc}") from None
        if not isinstance(header, dict):
            raise UndecodableEventError("JWS header is not a JSON object")
        alg = header.get("alg")
        if alg != ALGORITHM:
            raise BadSignatureError(f"algorithm {alg!r} is not allowed (only {ALGORITHM})")
        if "crit" in header or "b64" in header:
            raise BadSignatureError("JWS extensions (crit, b64) are not accepted")
        found_typ = header.get("typ", JWS_TYPE if typ == JWS_TYPE else None)
        if found_typ != typ:
            raise BadSignatureError(f"JWS typ {found_typ!r} is not {typ!r}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise UnknownKeyError("signature has no 'kid'")
        key = self._keys.get(kid)
        if key is None:
            trusted = ", ".join(self.kids) or "none"
            raise UnknownKeyError(f"kid {kid!r} is not trusted (trusted: {trusted})")
        try:
            key.verify(signature, signing_input)
        except InvalidSignature:
            raise BadSignatureError(f"signature does not verify with kid {kid!r}") from None
        return payload


def fetch_jwks(url: str, *, timeout: float = 5.0) -> dict[str, Any]:
    """The JSON object at a JWKS URL, fetched within the bounds of the module docstring
    (same-scheme redirects only, :data:`MAX_JWKS_BYTES`, ``timeout`` seconds in all; a
    warning for plain http off loopback). Any failure is a :class:`ConfigError` naming
    the URL. Used for revocast's own event keys and for an IdP's token keys alike."""
    scheme = urlsplit(url).scheme
    if scheme not in ("https", "http"):
        raise ConfigError(f"JWKS URL must be http(s): {url!r}")
    if scheme == "http" and not _is_loopback(url):
        log.warning(
            "JWKS %s is fetched over plain http: anyone on the path can swap the keys "
            "that decide what is trusted; use https",
            url,
        )
    deadline = time.monotonic() + timeout
    try:
        with httpx.Client(
            timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False
        ) as client:
            body = _bounded_get(client, url, scheme, deadline)
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot fetch JWKS from {url}: {exc}") from None
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ConfigError(f"JWKS from {url} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"JWKS from {url} is not a JSON object")
    return data


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bounded_get(client: httpx.Client, url: str, scheme: str, deadline: float) -> bytes:
    """The body at ``url``: same-scheme redirects only, at most MAX_JWKS_BYTES, by ``deadline``."""
    for _ in range(MAX_REDIRECTS + 1):
        headers = {"accept": "application/json", "accept-encoding": "identity"}
        with client.stream("GET", url, headers=headers) as resp:
            if resp.is_redirect:
                location = urljoin(url, resp.headers.get("location", ""))
                if urlsplit(location).scheme != scheme:
                    raise ConfigError(
                        f"JWKS {url} redirects to {location!r}: a redirect to another scheme "
                        "is refused"
                    )
                url = location
                continue
            if resp.status_code != 200:
                raise ConfigError(f"cannot fetch JWKS from {url}: HTTP {resp.status_code}")
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_JWKS_BYTES:
                raise ConfigError(f"JWKS from {url} is larger than {MAX_JWKS_BYTES} bytes")
            body = bytearray()
            for chunk in resp.iter_raw():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ConfigError(f"JWKS from {url} is larger than {MAX_JWKS_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise ConfigError(f"JWKS from {url} did not arrive within the timeout")
            return bytes(body)
    raise ConfigError(f"JWKS {url}: more than {MAX_REDIRECTS} redirects")


def is_signed(data: bytes) -> bool:
    """Whether ``data`` looks like a compact JWS rather than plain JSON."""
    return not data.lstrip().startswith(b"{") and data.count(b".") == 2


def require_signature(data: bytes) -> None:
    if not is_signed(data):
        raise MissingSignatureError("event is not signed (a JWS is required)")
