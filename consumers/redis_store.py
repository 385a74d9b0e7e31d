"""Redis: a view shared by a service's replicas, snapshots, and the per-request baseline.

* :class:`RedisRevocationStore` writes every applied event as Redis keys with
  an absolute expiry (``PXAT``), under a namespace per service. Writes are a
  join, as in :class:`RevocationState`: one Lua script keeps the maximum of the
  stored time and of the expiry, so concurrent writers (two replicas applying
  the same events in different orders) converge. Another replica reads the view
  with :meth:`~RedisRevocationStore.check` (one ``MGET``) or copies it into its
  own state with :meth:`~RedisRevocationStore.load_into`.
* :class:`RedisSnapshotStore` saves a :class:`~consumers.stores.ConsumerSnapshot`
  (state + per-partition offsets) under one key per service and events topic,
  so a restarted instance warms up and replays only the tail. Any replica's
  snapshot is valid for every replica of the service.
* :class:`RedisSessionLookup` is the classic baseline revocast replaces: one
  ``EXISTS`` per request. Kept for the benchmark.

Every Redis failure is raised as :class:`schemas.StoreUnavailableError`
(``retriable``), naming the operation.

Keys are unambiguous: every part (prefix, service, topic, tenant, id) is
percent-encoded, so no ``:`` (the separator) and no SCAN glob character
(``*?[]``) is left inside a part; two different (service, kind, tenant, id) never
share a key, and a scan of one service's namespace never reads another's.
Layout: ``<prefix>:view:<service>:<kind tag>:<id>`` for a fact about every
tenant, ``...:<id>:t:<tenant>`` for a fact about one tenant, and
``...:<id>:any`` for the join of a fact over all tenants (what a token that
names no tenant meets; see the tenant rules in :mod:`consumers.state`).

Guarantee: an entry leaves Redis at its ``expires_at`` (Redis expiry), never
before; not-before and claims-changed times only grow. Not guaranteed: that the
shared view is complete; it holds what some consumer wrote, so pair it with a
consumer (and its freshness guard) when a decision must be current.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from typing import Any, Final
from urllib.parse import quote, unquote

import redis
from redis.exceptions import RedisError

from consumers.exceptions import SnapshotError
from consumers.state import (
    ANY_TENANT,
    DEFAULT_TENANT_CLAIM,
    ENTRY_KINDS,
    Decision,
    RevocationState,
    token_parties,
)
from consumers.stores import ConsumerSnapshot
from schemas import (
    ClaimsChanged,
    CredentialKind,
    CredentialRotated,
    Envelope,
    Heartbeat,
    SessionRevoked,
    StoreUnavailableError,
    SubjectOffboarded,
    TokenRevoked,
)

__all__ = ["RedisRevocationStore", "RedisSessionLookup", "RedisSnapshotStore", "connect"]

# Stored value is the time (epoch seconds) to take the max of ("1" for plain ids);
# the key's expiry is the max of the old and new expires_at (ms).
_JOIN: Final = """
local old = redis.call('GET', KEYS[1])
local exp = tonumber(ARGV[2])
local old_exp = redis.call('PEXPIRETIME', KEYS[1])
if old_exp > exp then exp = old_exp end
local value = ARGV[1]
if old and tonumber(old) and tonumber(old) >= tonumber(value) then value = old end
if old == value and old_exp == exp then return 0 end
redis.call('SET', KEYS[1], value, 'PXAT', exp)
return 1
"""

# One short tag per fact kind, in ENTRY_KINDS order.
_TAGS: Final = dict(zip(ENTRY_KINDS, ("s", "j", "o", "c", "k", "a"), strict=True))
_KINDS_BY_TAG: Final = {tag: kind for kind, tag in _TAGS.items()}

_ANY: Final = "any"  # the scope part of an "any tenant" key
_TENANT: Final = "t"  # the scope part before a tenant


def _part(text: str) -> str:
    """One key part, percent-encoded: only ``A-Za-z0-9_.-~%`` remain, never ``:`` nor a
    glob character, and ``%`` itself is encoded, so the encoding is one-to-one."""
    return quote(text, safe="")


def connect(url: str, *, timeout: float = 2.0) -> redis.Redis:
    """A client for ``url`` with bounded timeouts (raises StoreUnavailableError)."""
    try:
        client: redis.Redis = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        client.ping()
    except (RedisError, ValueError) as exc:
        raise StoreUnavailableError(f"Redis at {_safe_url(url)} did not answer: {exc}") from None
    return client


def _safe_url(url: str) -> str:
    """The URL without a password (never log credentials)."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


def _ms(seconds: float) -> int:
    return math.ceil(seconds * 1000)


class RedisRevocationStore:
    """The revocation view of one service, shared by its replicas through Redis.

    Pass it as ``shared_view=`` to :class:`~consumers.consumer.RevocationConsumer`
    (writes happen off the apply path), or call :meth:`apply` yourself.

        store = RedisRevocationStore(connect("redis://127.0.0.1:6379/0"), "orders")
        store.check({"sub": "u-1", "sid": "s-42", "iat": 1700000000})
    """

    def __init__(self, client: redis.Redis, service: str, *, prefix: str = "revocast") -> None:
        self.client = client
        self.namespace = f"{_part(prefix)}:view:{_part(service)}"
        self._join = client.register_script(_JOIN)

    def key(
        self, kind: str, ident: str, tenant: str | None = None, *, any_tenant: bool = False
    ) -> str:
        """The Redis key of one fact (``kind`` from :data:`~consumers.state.ENTRY_KINDS`):
        about every tenant, about ``tenant``, or (``any_tenant``) its join over all tenants."""
        base = f"{self.namespace}:{_TAGS[kind]}:{_part(ident)}"
        if any_tenant:
            return f"{base}:{_ANY}"
        if tenant is not None:
            return f"{base}:{_TENANT}:{_part(tenant)}"
        return base

    def apply(self, envelope: Envelope) -> None:
        """Write the fact ``envelope`` states (heartbeats and expired events: nothing)."""
        event = envelope.event
        if isinstance(event, Heartbeat):
            return
        exp = event.expires_at.timestamp()
        if exp <= time.time():
            return
        if isinstance(event, SessionRevoked):
            kind, ident, at = "sessions", event.session_id, 1.0
        elif isinstance(event, TokenRevoked):
            kind, ident, at = "tokens", event.jti, 1.0
        elif isinstance(event, SubjectOffboarded):
            kind, ident, at = "subjects", event.subject.id, event.not_before.timestamp()
        elif isinstance(event, ClaimsChanged):
            kind, ident, at = "claims", event.subject.id, event.changed_at.timestamp()
        elif isinstance(event, CredentialRotated):
            kind = "kid" if event.credential_kind is CredentialKind.SIGNING_KEY else "client_id"
            ident, at = event.credential_id, event.not_before.timestamp()
        else:  # pragma: no cover - the Event union is closed
            raise TypeError(f"not a revocation event: {type(event).__name__}")
        tenant = event.subject.tenant
        keys = [self.key(kind, ident, tenant)]
        if tenant is not None:
            keys.append(self.key(kind, ident, any_tenant=True))
        try:
            for key in keys:
                self._join(keys=[key], args=[repr(at), _ms(exp)])
        except RedisError as exc:
            raise StoreUnavailableError(f"Redis write of a {kind} entry failed: {exc}") from None

    def check(
        self,
        claims: Mapping[str, Any],
        header: Mapping[str, Any] | None = None,
        now: float | None = None,
        *,
        tenant_claim: str = DEFAULT_TENANT_CLAIM,
    ) -> Decision:
        """The same rules as :meth:`RevocationState.check`, read from Redis (one round trip)."""
        wanted: list[tuple[str, str, str | None]] = []  # kind, id, tenant (None: any)

        def want(kind: str, value: Any, tenant: str | None) -> None:
            if isinstance(value, str):
                wanted.append((kind, value, tenant))

        raw_tenant = claims.get(tenant_claim)
        tenant = raw_tenant if isinstance(raw_tenant, str) and raw_tenant else None
        want("sessions", claims.get("sid"), tenant)
        want("tokens", claims.get("jti"), tenant)
        want("subjects", claims.get("sub"), tenant)
        want("claims", claims.get("sub"), tenant)
        if header is not None:
            want("kid", header.get("kid"), tenant)
        for _role, party, party_tenant in token_parties(claims, tenant_claim):
            want("client_id", party, party_tenant)
            want("subjects", party, party_tenant)
        if now is None:
            now = time.time()
        state = RevocationState()
        if wanted:
            lookups: list[tuple[str, str, Any]] = []
            for kind, ident, scope in wanted:
                lookups.append((kind, ident, None))
                lookups.append((kind, ident, scope if scope is not None else ANY_TENANT))
            keys = [
                self.key(
                    kind,
                    ident,
                    None if scope is ANY_TENANT else scope,
                    any_tenant=scope is ANY_TENANT,
                )
                for kind, ident, scope in lookups
            ]
            try:
                with self.client.pipeline(transaction=False) as pipe:
                    pipe.mget(keys)
                    for key in keys:
                        pipe.pexpiretime(key)
                    values, *expiries = pipe.execute()
            except RedisError as exc:
                raise StoreUnavailableError(f"Redis read failed: {exc}") from None
            for (kind, ident, scope), value, exp_ms in zip(lookups, values, expiries, strict=True):
                if value is not None and exp_ms > 0:
                    state.add(kind, ident, exp_ms / 1000, float(value), now=now, tenant=scope)
        return state.check(claims, header, now, tenant_claim=tenant_claim)

    def entries(self) -> Iterator[tuple[str, str, str | None, float, float]]:
        """Every live fact as ``(kind, id, tenant, time, expires_at)`` (SCAN; for warm-up).

        ``tenant`` is ``None`` for a fact about every tenant; the "any tenant" joins
        are left out (a state rebuilds them from the tenant facts).
        """
        prefix = f"{self.namespace}:"
        try:
            for batch in _batched(self.client.scan_iter(match=f"{prefix}*", count=1000), 500):
                with self.client.pipeline(transaction=False) as pipe:
                    for key in batch:
                        pipe.get(key)
                        pipe.pexpiretime(key)
                    results = pipe.execute()
                for key, value, exp_ms in zip(batch, results[::2], results[1::2], strict=True):
                    parsed = _parse_fact(key.decode()[len(prefix) :])
                    if parsed is not None and value is not None and exp_ms > 0:
                        kind, ident, tenant = parsed
                        yield kind, ident, tenant, float(value), exp_ms / 1000
        except RedisError as exc:
            raise StoreUnavailableError(f"Redis scan of {self.namespace} failed: {exc}") from None

    def load_into(self, state: RevocationState) -> int:
        """Join every live fact into ``state``; returns how many were read."""
        n = 0
        for kind, ident, tenant, at, exp in self.entries():
            state.add(kind, ident, exp, at, tenant=tenant)
            n += 1
        return n


def _parse_fact(rest: str) -> tuple[str, str, str | None] | None:
    """``(kind, id, tenant)`` of a key below a namespace; None for "any tenant" joins and
    for keys this code does not write."""
    parts = rest.split(":")
    kind = _KINDS_BY_TAG.get(parts[0])
    if kind is None:
        return None
    if len(parts) == 2:
        return kind, unquote(parts[1]), None
    if len(parts) == 4 and parts[2] == _TENANT:
        return kind, unquote(parts[1]), unquote(parts[3])
    return None


def _batched(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class RedisSnapshotStore:
    """Snapshots of a service's view, one key per service and events topic.

    ``ttl`` bounds how long an unused snapshot lingers (default: a week).
    """

    def __init__(
        self,
        client: redis.Redis,
        service: str,
        *,
        prefix: str = "revocast",
        ttl: float = 7 * 24 * 3600.0,
    ) -> None:
        self.client = client
        self.service = service
        self.prefix = prefix
        self.ttl = ttl

    def key(self, topic: str) -> str:
        return f"{_part(self.prefix)}:snapshot:{_part(self.service)}:{_part(topic)}"

    def save(self, snapshot: ConsumerSnapshot) -> None:
        try:
            self.client.set(self.key(snapshot.topic), snapshot.to_json(), px=_ms(self.ttl))
        except RedisError as exc:
            raise StoreUnavailableError(f"Redis snapshot save failed: {exc}") from None

    def load(self, topic: str) -> ConsumerSnapshot | None:
        """The saved snapshot, or ``None`` (raises SnapshotError when corrupt)."""
        try:
            data = self.client.get(self.key(topic))
        except RedisError as exc:
            raise StoreUnavailableError(f"Redis snapshot load failed: {exc}") from None
        if data is None:
            return None
        snapshot = ConsumerSnapshot.from_json(data)
        if snapshot.topic != topic:
            raise SnapshotError(f"snapshot under {self.key(topic)} is for {snapshot.topic!r}")
        return snapshot

    def delete(self, topic: str) -> None:
        try:
            self.client.delete(self.key(topic))
        except RedisError as exc:
            raise StoreUnavailableError(f"Redis snapshot delete failed: {exc}") from None


class RedisSessionLookup:
    """The baseline: "look the session up in Redis on every request".

    One round trip per check, which is what revocast's in-process view avoids.
    """

    def __init__(self, client: redis.Redis, *, prefix: str = "revocast:sessions") -> None:
        self.client = client
        self.prefix = prefix

    def revoke(self, sid: str, expires_at: float) -> None:
        try:
            self.client.set(f"{self.prefix}:{_part(sid)}", b"1", pxat=_ms(expires_at))
        except RedisError as exc:
            raise StoreUnavailableError(f"Redis session write failed: {exc}") from None

    def is_revoked(self, sid: str) -> bool:
        try:
            return bool(self.client.exists(f"{self.prefix}:{_part(sid)}"))
        except RedisError as exc:
            raise StoreUnavailableError(f"Redis session lookup failed: {exc}") from None
