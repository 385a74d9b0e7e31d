"""What the SSF receiver keeps in Redis: seen ``jti``s, pending poll acknowledgements, stream
status and verification state. Every key starts with ``<key_prefix>:<transmitter name>:``.

Guarantees:

* **A jti is marked only after its revocations were acknowledged by Kafka** (the receiver
  calls :meth:`SsfStore.mark` after ``publish``), with a TTL of the transmitter's
  ``max_set_age`` + ``clock_skew``: a SET older than that is refused by ``iat`` anyway, so
  the bounded TTL loses no dedupe. jtis are stored hashed (SHA-256): fixed-size keys.
* **Pending poll acknowledgements survive a restart**: a SET's jti is added to the pending
  ``ack`` set (or its error to ``errs``) once handled, and removed only after the
  transmitter answered the poll request that carried it (RFC 8936 §2.4).
* Redis that does not answer raises :class:`~schemas.StoreUnavailableError` (retriable):
  the push endpoint answers 503, the poll loop backs off; nothing is acknowledged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import redis

from schemas import StoreUnavailableError

__all__ = ["SsfStore"]

T = TypeVar("T")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class SsfStore:
    """Redis-backed receiver state; ``client`` is a ``redis.Redis`` (decode_responses off)."""

    def __init__(self, client: redis.Redis, prefix: str = "revocast:ssf") -> None:
        self._redis = client
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = "revocast:ssf", timeout: float = 2.0) -> SsfStore:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, prefix)

    def close(self) -> None:
        self._redis.close()

    def _key(self, name: str, *parts: str) -> str:
        return ":".join((self.prefix, name, *parts))

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Redis ({what}): {exc}") from None

    # -- jti dedupe

    def seen(self, name: str, jti: str) -> bool:
        key = self._key(name, "jti", _digest(jti))
        return bool(self._call("jti lookup", lambda: self._redis.exists(key)))

    def mark(self, name: str, jti: str, ttl: timedelta) -> None:
        key = self._key(name, "jti", _digest(jti))
        seconds = max(1, int(ttl.total_seconds()))
        self._call("jti mark", lambda: self._redis.set(key, b"1", ex=seconds))

    # -- pending poll acknowledgements (RFC 8936)

    def add_ack(self, name: str, jti: str) -> None:
        key = self._key(name, "poll", "ack")
        self._call("pending ack", lambda: self._redis.sadd(key, jti))

    def add_err(self, name: str, jti: str, body: dict[str, str]) -> None:
        key = self._key(name, "poll", "errs")
        self._call("pending setErr", lambda: self._redis.hset(key, jti, json.dumps(body)))

    def pending(self, name: str) -> tuple[list[str], dict[str, dict[str, str]]]:
        ack_key = self._key(name, "poll", "ack")
        err_key = self._key(name, "poll", "errs")

        def read() -> tuple[list[str], dict[str, dict[str, str]]]:
            acks = sorted(m.decode() for m in self._redis.smembers(ack_key))  # type: ignore[union-attr]
            raw: dict[bytes, bytes] = self._redis.hgetall(err_key)  # type: ignore[assignment]
            return acks, {k.decode(): json.loads(v) for k, v in raw.items()}

        return self._call("pending acks", read)

    def delivered(self, name: str, acks: list[str], errs: list[str]) -> None:
        """The transmitter answered the poll that carried these: forget them."""
        ack_key = self._key(name, "poll", "ack")
        err_key = self._key(name, "poll", "errs")

        def clear() -> None:
            pipe = self._redis.pipeline()
            if acks:
                pipe.srem(ack_key, *acks)
            if errs:
                pipe.hdel(err_key, *errs)
            pipe.execute()

        if acks or errs:
            self._call("clear acks", clear)

    # -- stream status and verification

    def set_status(self, name: str, status: str, reason: str | None) -> None:
        key = self._key(name, "stream")
        now = datetime.now(UTC).isoformat()

        def write() -> None:
            pipe = self._redis.pipeline()
            pipe.hset(key, "status", status)
            pipe.hset(key, "reason", reason or "")
            pipe.hset(key, "status_at", now)
            pipe.execute()

        self._call("stream status", write)

    def expect_verification(self, name: str, state: str, ttl: timedelta) -> None:
        key = self._key(name, "verify")
        seconds = max(1, int(ttl.total_seconds()))
        self._call("verification state", lambda: self._redis.set(key, state, ex=seconds))

    def verification_state(self, name: str) -> str | None:
        key = self._key(name, "verify")
        value = self._call("verification state", lambda: self._redis.get(key))
        return value.decode() if isinstance(value, bytes) else None

    def verified(self, name: str) -> None:
        key = self._key(name, "stream")
        now = datetime.now(UTC).isoformat()
        self._call("verified", lambda: self._redis.hset(key, "verified_at", now))
        self._call("verified", lambda: self._redis.delete(self._key(name, "verify")))

    def touch(self, name: str, field: str) -> None:
        """Record the time of the last SET handled (``field``: last_set_at, last_poll_at)."""
        key = self._key(name, "stream")
        now = datetime.now(UTC).isoformat()
        self._call("stream status", lambda: self._redis.hset(key, field, now))

    def status(self, name: str) -> dict[str, Any]:
        key = self._key(name, "stream")
        raw: dict[bytes, bytes] = self._call("stream status", lambda: self._redis.hgetall(key))  # type: ignore[arg-type,return-value]
        out: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
        out.setdefault("status", "unknown")
        return out
