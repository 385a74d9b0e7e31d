"""The in-process view of what is revoked: a join-semilattice of expiring facts.

:class:`RevocationState` holds six kinds of facts, each keyed by an id:

============== ==================== ===================================
kind           key                  value
============== ==================== ===================================
``sessions``   ``sid``              expires_at
``tokens``     ``jti``              expires_at
``subjects``   subject id           (not_before, expires_at), max of each
``claims``     subject id           (changed_at, expires_at), max of each
``kid``        signing key id       (not_before, expires_at), max of each
``client_id``  OAuth client id      (not_before, expires_at), max of each
============== ==================== ===================================

Each key is the plain id for a fact about every tenant, or ``(tenant, id)``
for a fact about one tenant (see *Tenants* below).

Guarantees:

* **Join.** :meth:`RevocationState.apply` and :meth:`RevocationState.merge` only
  add ids or raise times (componentwise max), so applying any permutation of
  any multiset of events gives an equal state. Replays and at-least-once
  delivery are therefore always safe. Nothing here can un-revoke.
* **Bounded by credential lifetime.** Every fact carries the ``expires_at`` of
  the credential it guards. A lookup never counts an expired fact (it compares
  with ``now``); memory is reclaimed by a timing wheel, a little on every
  :meth:`~RevocationState.apply` (amortised O(1), bounded work per call) and all
  at once by :meth:`~RevocationState.expire`. An event that is already expired
  when it arrives is not stored.
* **Cheap checks.** :meth:`RevocationState.check` is a handful of ``dict``
  lookups on plain ``str``/``float`` values: no pydantic, no allocation on a
  miss (the ALLOW decision is a shared constant).
* **Delegation.** Every party of a token besides ``sub`` (``azp``,
  ``client_id``, and the ``sub`` and ``client_id`` of every actor of an RFC 8693
  ``act`` chain, up to 16 levels; a deeper chain is refused) meets the same
  two rules: its client credential rotated (``credential_rotated``) and the
  party itself offboarded (``delegation_revoked``).
* **Tenants.** An event whose subject names a tenant (``Subject.tenant``) states
  a fact about that tenant only: offboarding alice in ``acme`` rejects
  alice's tokens whose tenant claim (``tid`` by default, see ``tenant_claim``)
  is ``acme``, never those of ``globex``. Such a fact is held under the key
  ``(tenant, id)``, and joined into an "any tenant" entry ``(None, id)``. An
  event with no tenant applies to every tenant (plain key). A token that names
  no tenant (no claim, or not a non-empty string) meets every tenant's facts:
  without a tenant it cannot be told apart, so it fails closed. An actor in an
  ``act`` chain is judged in its own tenant claim when it carries one, else
  in the token's.
* **Threads.** One writer (the consumer thread) and any number of readers: a
  reader sees each fact atomically (CPython ``dict`` operations are atomic under
  the GIL). Do not call ``apply``/``merge``/``expire`` from two threads at once.

Not guaranteed: the view is only as complete as the events applied to it.
Whether it is *fresh* is the consumer's business (see
:class:`consumers.freshness.FreshnessGuard`).

    >>> from schemas import Envelope, SessionRevoked, Subject, in_seconds
    >>> state = RevocationState()
    >>> ev = SessionRevoked(subject=Subject(id="u-1", kind="human"),
    ...                     session_id="s-42", expires_at=in_seconds(3600))
    >>> state.apply(Envelope.wrap(ev, issuer="iam"))
    True
    >>> state.check({"sub": "u-1", "sid": "s-42", "iat": 1}).rule == "session_revoked"
    True
    >>> state.check({"sub": "u-1", "sid": "s-7", "iat": 1}).allowed
    True
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any, Final, NamedTuple, TypeAlias

from consumers.exceptions import SnapshotError
from schemas import (
    ClaimsChanged,
    CredentialKind,
    CredentialRotated,
    Envelope,
    Heartbeat,
    RevocationEvent,
    SessionRevoked,
    SubjectOffboarded,
    TokenRevoked,
)

__all__ = [
    "ALLOW",
    "ANY_TENANT",
    "DEFAULT_TENANT_CLAIM",
    "ENTRY_KINDS",
    "SNAPSHOT_VERSION",
    "Decision",
    "RevocationState",
    "Rule",
    "Verdict",
    "token_parties",
]

SNAPSHOT_VERSION: Final = 2
"""2 added tenant-scoped facts (``"scoped"``); version-1 snapshots still load."""

DEFAULT_TENANT_CLAIM: Final = "tid"
"""The claim a token's tenant is read from unless told otherwise (Entra ID's name)."""


class _AnyTenant(Enum):
    ANY_TENANT = "any tenant"


ANY_TENANT: Final = _AnyTenant.ANY_TENANT
"""For :meth:`RevocationState.add`: the fact is the join over all tenants (a
token naming no tenant meets it); rebuilt from the tenant facts, so only a
store that holds it separately (Redis) hands it in."""

Key: TypeAlias = str | tuple[str | None, str]
"""A fact's key: the id (every tenant), or ``(tenant, id)`` (``None``: any tenant)."""

ENTRY_KINDS: Final = ("sessions", "tokens", "subjects", "claims", "kid", "client_id")
"""Names of the six fact kinds, in the order used by :meth:`RevocationState.counts`."""

# Index of each kind in RevocationState._dicts. Kinds below _FIRST_TIMED map a
# key to its expiry (float); the others map a key to (time, expiry).
_SESSIONS, _TOKENS, _SUBJECTS, _CLAIMS, _KIDS, _CLIENTS = range(6)
_FIRST_TIMED: Final = _SUBJECTS
_KIND_INDEX: Final = {kind: index for index, kind in enumerate(ENTRY_KINDS)}
_KINDS: Final = 8  # wheel keys are bucket * _KINDS + kind

_MAX_ACT_DEPTH: Final = 16
"""Deeper ``act`` chains are refused outright (fail closed) rather than walked."""

_now: Final = time.time

_SWEEP_BUDGET: Final = 512
"""At most this many keys are examined by the sweep inside one ``apply``."""


class Verdict(StrEnum):
    ALLOW = "allow"
    REVOKED = "revoked"
    STALE_CLAIMS = "stale_claims"


class Rule(StrEnum):
    """Which rule decided. Stable strings: used in logs, metrics and errors."""

    SESSION_REVOKED = "session_revoked"
    TOKEN_REVOKED = "token_revoked"  # noqa: S105 (a rule name, not a password)
    SUBJECT_OFFBOARDED = "subject_offboarded"
    CREDENTIAL_ROTATED = "credential_rotated"
    DELEGATION_REVOKED = "delegation_revoked"
    CLAIMS_CHANGED = "claims_changed"
    MALFORMED_CLAIMS = "malformed_claims"


class Decision(NamedTuple):
    """The outcome of :meth:`RevocationState.check` (immutable, slot-free tuple).

    ``since`` is the time (epoch seconds) that decided a time-based rule: the
    not-before of an offboarding or rotation, or the claims-changed time (what a
    claims challenge asks the next token's ``iat`` to reach).
    """

    verdict: Verdict
    rule: Rule | None = None
    detail: str = ""
    since: float | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict is _ALLOW


# Enum member lookups cost ~0.2 us each on the hot path; bind them once.
_ALLOW: Final = Verdict.ALLOW
_REVOKED: Final = Verdict.REVOKED
_SESSION_REVOKED: Final = Rule.SESSION_REVOKED
_TOKEN_REVOKED: Final = Rule.TOKEN_REVOKED
_SUBJECT_OFFBOARDED: Final = Rule.SUBJECT_OFFBOARDED
_CREDENTIAL_ROTATED: Final = Rule.CREDENTIAL_ROTATED

ALLOW: Final = Decision(Verdict.ALLOW)


def _revoked(rule: Rule, detail: str, since: float | None = None) -> Decision:
    return Decision(_REVOKED, rule, detail, since)


def _issued_before(iat: Any, not_before: float) -> bool:
    """Whether a token with ``iat`` predates ``not_before``; no ``iat`` fails closed."""
    return iat is None or iat < not_before


def _live_time(source: dict[Key, Any], key: Any, iat: Any, now: float) -> float | None:
    """The not-before (or changed-at) under ``key`` that rejects a token issued at ``iat``."""
    entry = source.get(key)
    if entry is not None and entry[1] > now and (iat is None or iat < entry[0]):
        return float(entry[0])
    return None


def _in(tenant: str | None) -> str:
    return f" (tenant {tenant!r})" if tenant is not None else ""


def _tenant_of(holder: Mapping[str, Any], claim: str, default: str | None) -> str | None:
    value = holder.get(claim)
    return value if isinstance(value, str) and value else default


def token_parties(
    claims: Mapping[str, Any], tenant_claim: str = DEFAULT_TENANT_CLAIM
) -> list[tuple[str, Any, str | None]]:
    """Every party of a token besides ``sub`` whom the delegation rules judge, as
    ``(role, id, tenant)``: ``azp``, ``client_id``, then each actor (``sub`` and
    ``client_id``) of the ``act`` chain, at most :data:`_MAX_ACT_DEPTH` levels; the
    tenant as :meth:`RevocationState.check` reads it (``None``: any tenant). For
    stores that look facts up by key (Redis)."""
    tenant = _tenant_of(claims, tenant_claim, None)
    parties: list[tuple[str, Any, str | None]] = []
    for role in ("azp", "client_id"):
        if claims.get(role) is not None:
            parties.append((role, claims[role], tenant))
    act = claims.get("act")
    for depth in range(1, _MAX_ACT_DEPTH + 1):
        if not isinstance(act, Mapping):
            break
        actor_tenant = _tenant_of(act, tenant_claim, None) if tenant_claim in act else tenant
        for role in ("sub", "client_id"):
            if act.get(role) is not None:
                parties.append((f"actor {role} (act level {depth})", act[role], actor_tenant))
        act = act.get("act")
    return parties


class RevocationState:
    """What is revoked, as seen by this process. See the module docstring.

    ``granularity`` is the width (seconds) of a timing-wheel bucket: an expired
    fact is reclaimed by ``apply`` at most about that long after it expires (a
    lookup ignores it from the first moment).
    """

    __slots__ = (
        "_dicts",
        "_granularity",
        "_heap",
        "_max_lifetime",
        "_next_due",
        "_tenanted",
        "_wheel",
        "capped",
    )

    def __init__(self, *, granularity: float = 1.0, max_lifetime: float | None = None) -> None:
        """``max_lifetime`` (seconds): no fact outlives its event's publish time by more
        (see :meth:`schemas.Envelope.lifetime_capped`); ``capped`` counts the events cut."""
        if not granularity > 0:
            raise ValueError("granularity must be positive")
        if max_lifetime is not None and not max_lifetime > 0:
            raise ValueError("max_lifetime must be positive (seconds)")
        self._granularity = float(granularity)
        self._max_lifetime = max_lifetime
        self.capped = 0
        self._dicts: tuple[dict[Key, Any], ...] = tuple({} for _ in ENTRY_KINDS)
        self._tenanted = False  # any (tenant, id) key yet: only then are they looked up
        # Timing wheel: wheel key -> keys whose expiry falls in that bucket; a
        # heap of wheel keys gives the next bucket due.
        self._wheel: dict[int, list[Key]] = {}
        self._heap: list[int] = []
        self._next_due = math.inf

    # ------------------------------------------------------------------ reads

    def check(
        self,
        claims: Mapping[str, Any],
        header: Mapping[str, Any] | None = None,
        now: float | None = None,
        *,
        tenant_claim: str = DEFAULT_TENANT_CLAIM,
    ) -> Decision:
        """Decide whether a token with these (already verified) claims is revoked.

        Rules, first match wins: ``sid`` revoked; ``jti`` revoked; ``sub``
        offboarded and ``iat`` before its not-before; header ``kid`` rotated;
        then every other party of the token, in order ``azp``, ``client_id``
        and each actor (``sub`` and ``client_id``) of the ``act`` chain: its
        client credential rotated (``credential_rotated``) or the party itself
        offboarded (``delegation_revoked``); ``sub`` claims changed after
        ``iat`` (:attr:`Verdict.STALE_CLAIMS`). A token without ``iat`` fails
        every time-based rule it meets. The token's tenant is read from
        ``claims[tenant_claim]`` (see *Tenants* in the module docstring).
        """
        # Hot path: plain dict lookups written out; the tenant lookups (method calls)
        # only once a tenant fact exists.
        if now is None:
            now = _now()
        sessions, tokens, subjects, changed, kids, clients = self._dicts
        get = claims.get
        tenanted = self._tenanted
        tenant: str | None = None
        try:
            if tenanted:
                tenant = _tenant_of(claims, tenant_claim, None)
            sid = get("sid")
            if sid is not None:
                exp = sessions.get(sid)
                if (exp is not None and exp > now) or (
                    tenanted and self._scoped_id(sessions, sid, tenant, now)
                ):
                    return _revoked(_SESSION_REVOKED, f"session {sid!r}{_in(tenant)} is revoked")
            jti = get("jti")
            if jti is not None:
                exp = tokens.get(jti)
                if (exp is not None and exp > now) or (
                    tenanted and self._scoped_id(tokens, jti, tenant, now)
                ):
                    return _revoked(_TOKEN_REVOKED, f"token {jti!r}{_in(tenant)} is revoked")
            iat = get("iat")
            sub = get("sub")
            if sub is not None:
                entry = subjects.get(sub)
                since = (
                    entry[0]
                    if entry is not None and entry[1] > now and (iat is None or iat < entry[0])
                    else None
                )
                if since is None and tenanted:
                    since = _live_time(subjects, (tenant, sub), iat, now)
                if since is not None:
                    return _revoked(
                        _SUBJECT_OFFBOARDED,
                        f"subject {sub!r}{_in(tenant)} was offboarded; token issued before "
                        f"{_iso(since)}",
                        since,
                    )
            if header is not None:
                kid = header.get("kid")
                if kid is not None and (kids or tenanted):
                    since = _live_time(kids, kid, iat, now)
                    if since is None and tenanted:
                        since = _live_time(kids, (tenant, kid), iat, now)
                    if since is not None:
                        return _revoked(
                            _CREDENTIAL_ROTATED,
                            f"signing key {kid!r} was rotated; token issued before {_iso(since)}",
                            since,
                        )
            if subjects or clients:  # nobody offboarded, no client rotated: no party to check
                azp = get("azp")
                if azp is not None:
                    decision = self._check_party("azp", 0, azp, tenant, iat, now)
                    if decision is not None:
                        return decision
                client_id = get("client_id")
                if client_id is not None:
                    decision = self._check_party("client_id", 0, client_id, tenant, iat, now)
                    if decision is not None:
                        return decision
                act = get("act")
                if act is not None:
                    decision = self._check_act(act, tenant, tenant_claim, iat, now)
                    if decision is not None:
                        return decision
            if sub is not None and (changed or tenanted):
                since = _live_time(changed, sub, iat, now)
                if since is None and tenanted:
                    since = _live_time(changed, (tenant, sub), iat, now)
                if since is not None:
                    return Decision(
                        Verdict.STALE_CLAIMS,
                        Rule.CLAIMS_CHANGED,
                        f"claims of {sub!r} changed at {since:.3f}, after the token was issued",
                        since,
                    )
        except TypeError:
            # An unhashable claim (a list as `sid`...) or a non-numeric `iat`: no
            # well-formed token looks like this, so fail closed.
            return _revoked(Rule.MALFORMED_CLAIMS, "a claim has an unexpected type")
        return ALLOW

    @staticmethod
    def _scoped_id(source: dict[Key, Any], key: Any, tenant: str | None, now: float) -> bool:
        exp = source.get((tenant, key))
        return exp is not None and exp > now

    def _check_party(
        self, role: str, depth: int, party: Any, tenant: str | None, iat: Any, now: float
    ) -> Decision | None:
        """A client or actor (``depth`` > 0: of that ``act`` level): its credential
        rotated, or the party itself offboarded."""
        clients, subjects = self._dicts[_CLIENTS], self._dicts[_SUBJECTS]
        rule = Rule.CREDENTIAL_ROTATED
        since = _live_time(clients, party, iat, now) if clients else None
        if since is None and self._tenanted:
            since = _live_time(clients, (tenant, party), iat, now)
        if since is None:
            rule = Rule.DELEGATION_REVOKED
            since = _live_time(subjects, party, iat, now) if subjects else None
            if since is None and self._tenanted:
                since = _live_time(subjects, (tenant, party), iat, now)
            if since is None:
                return None
        who = f"actor {role} (act level {depth})" if depth else role
        what = (
            "client credential was rotated" if rule is Rule.CREDENTIAL_ROTATED else "was offboarded"
        )
        return _revoked(
            rule,
            f"{who} {party!r}{_in(tenant)}: {what}; token issued before {_iso(since)}",
            since,
        )

    def _check_act(
        self, act: Any, tenant: str | None, tenant_claim: str, iat: Any, now: float
    ) -> Decision | None:
        """RFC 8693 ``act``: every actor of the (nested) chain, by ``sub`` and ``client_id``.

        An actor's own tenant claim wins over the token's; one that is not a
        tenant (not a non-empty string) meets every tenant's facts.
        """
        depth = 0
        while isinstance(act, Mapping):
            depth += 1
            if depth > _MAX_ACT_DEPTH:
                return _revoked(
                    Rule.DELEGATION_REVOKED, f"act chain deeper than {_MAX_ACT_DEPTH} levels"
                )
            actor_tenant = _tenant_of(act, tenant_claim, None) if tenant_claim in act else tenant
            for role in ("sub", "client_id"):
                actor = act.get(role)
                if actor is not None:
                    decision = self._check_party(role, depth, actor, actor_tenant, iat, now)
                    if decision is not None:
                        return decision
            act = act.get("act")
        return None

    def is_session_revoked(self, sid: str, now: float | None = None) -> bool:
        """Just the session rule: the in-process twin of a Redis session lookup."""
        exp = self._dicts[_SESSIONS].get(sid)
        return exp is not None and exp > (time.time() if now is None else now)

    def __len__(self) -> int:
        """Entries held, including expired ones not yet swept."""
        return sum(len(d) for d in self._dicts)

    def counts(self) -> dict[str, int]:
        """Entries held per kind (see :data:`ENTRY_KINDS`)."""
        return {kind: len(d) for kind, d in zip(ENTRY_KINDS, self._dicts, strict=True)}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RevocationState):
            return NotImplemented
        return self._dicts == other._dicts

    __hash__ = None  # type: ignore[assignment]  # mutable: equal states may change

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={n}" for k, n in self.counts().items())
        return f"RevocationState({inner})"

    # ----------------------------------------------------------------- writes

    def apply(self, item: Envelope | RevocationEvent | Heartbeat, now: float | None = None) -> bool:
        """Add the fact an event states; ``True`` when the state changed.

        Idempotent and commutative. Heartbeats, and events already expired at
        ``now``, change nothing.
        """
        event = item.event if isinstance(item, Envelope) else item
        if now is None:
            now = time.time()
        if now >= self._next_due:
            self._sweep(now, _SWEEP_BUDGET)
        if isinstance(event, Heartbeat):
            return False
        exp = event.expires_at.timestamp()
        if self._max_lifetime is not None:
            born = item.published_at_ns / 1e9 if isinstance(item, Envelope) else now
            if exp > born + self._max_lifetime:
                exp = born + self._max_lifetime
                self.capped += 1
        if exp <= now:
            return False
        tenant = event.subject.tenant
        if isinstance(event, SessionRevoked):
            return self._add_fact(_SESSIONS, event.session_id, None, exp, tenant)
        if isinstance(event, TokenRevoked):
            return self._add_fact(_TOKENS, event.jti, None, exp, tenant)
        if isinstance(event, SubjectOffboarded):
            at = event.not_before.timestamp()
            return self._add_fact(_SUBJECTS, event.subject.id, at, exp, tenant)
        if isinstance(event, ClaimsChanged):
            at = event.changed_at.timestamp()
            return self._add_fact(_CLAIMS, event.subject.id, at, exp, tenant)
        if isinstance(event, CredentialRotated):
            index = _KIDS if event.credential_kind is CredentialKind.SIGNING_KEY else _CLIENTS
            at = event.not_before.timestamp()
            return self._add_fact(index, event.credential_id, at, exp, tenant)
        raise TypeError(f"not a revocation event: {type(event).__name__}")

    def _add_fact(
        self, index: int, ident: str, at: float | None, exp: float, tenant: str | None
    ) -> bool:
        """A fact about every tenant (``tenant`` None), or about one tenant and so about
        "any tenant" too."""
        keys: tuple[Key, ...] = (ident,) if tenant is None else ((tenant, ident), (None, ident))
        if tenant is not None:
            self._tenanted = True
        changed = False
        for key in keys:
            if at is None:
                changed |= self._add_id(index, key, exp)
            else:
                changed |= self._add_time(index, key, at, exp)
        return changed

    def add(
        self,
        kind: str,
        key: str,
        expires_at: float,
        at: float | None = None,
        now: float | None = None,
        *,
        tenant: str | _AnyTenant | None = None,
    ) -> bool:
        """Join one raw fact (as stored in Redis or a snapshot); ``True`` if it changed.

        ``kind`` is one of :data:`ENTRY_KINDS`; ``at`` (the not-before or
        claims-changed time) is required for every kind but sessions and tokens.
        ``tenant``: the tenant the fact is about (``None``: every tenant;
        :data:`ANY_TENANT`: only the join over all tenants, as a store keeps it).
        """
        index = _KIND_INDEX.get(kind)
        if index is None:
            raise ValueError(f"unknown entry kind {kind!r} (one of {', '.join(ENTRY_KINDS)})")
        if at is None and index >= _FIRST_TIMED:
            raise ValueError(f"{kind} entries need a time (not-before or changed-at)")
        if now is None:
            now = time.time()
        if expires_at <= now:
            return False
        if index < _FIRST_TIMED:
            at = None
        if isinstance(tenant, _AnyTenant):
            self._tenanted = True
            scoped: Key = (None, key)
            if at is None:
                return self._add_id(index, scoped, expires_at)
            return self._add_time(index, scoped, at, expires_at)
        return self._add_fact(index, key, at, expires_at, tenant)

    def merge(self, other: RevocationState, now: float | None = None) -> bool:
        """Join ``other`` into this state (entries expired at ``now`` are skipped)."""
        if now is None:
            now = time.time()
        changed = False
        self._tenanted = self._tenanted or other._tenanted
        for index, source in enumerate(other._dicts):
            if index < _FIRST_TIMED:
                for key, exp in source.copy().items():
                    if exp > now:
                        changed |= self._add_id(index, key, exp)
            else:
                for key, (at, exp) in source.copy().items():
                    if exp > now:
                        changed |= self._add_time(index, key, at, exp)
        return changed

    def expire(self, now: float | None = None) -> int:
        """Drop every entry expired at ``now``; returns how many were dropped."""
        if now is None:
            now = time.time()
        dropped = self._sweep(now, None)
        # Buckets that straddle `now` hold some expired keys: filter them too.
        g = self._granularity
        for wheel_key in [k for k in self._wheel if (k // _KINDS) * g <= now]:
            index = wheel_key % _KINDS
            source = self._dicts[index]
            keep = []
            for key in self._wheel[wheel_key]:
                value = source.get(key)
                if value is None:
                    continue
                exp = value if index < _FIRST_TIMED else value[1]
                if exp <= now:
                    del source[key]
                    dropped += 1
                elif self._bucket(exp) * _KINDS + index == wheel_key:
                    keep.append(key)
            self._wheel[wheel_key] = keep
        return dropped

    def _bucket(self, exp: float) -> int:
        return int(exp // self._granularity)

    def _schedule(self, index: int, key: Key, exp: float) -> None:
        wheel_key = self._bucket(exp) * _KINDS + index
        keys = self._wheel.get(wheel_key)
        if keys is None:
            self._wheel[wheel_key] = [key]
            heapq.heappush(self._heap, wheel_key)
            due = (wheel_key // _KINDS + 1) * self._granularity
            if due < self._next_due:
                self._next_due = due
        else:
            keys.append(key)

    def _add_id(self, index: int, key: Key, exp: float) -> bool:
        source = self._dicts[index]
        old = source.get(key)
        if old is not None and old >= exp:
            return False
        source[key] = exp
        self._schedule(index, key, exp)
        return True

    def _add_time(self, index: int, key: Key, at: float, exp: float) -> bool:
        source = self._dicts[index]
        old = source.get(key)
        if old is None:
            source[key] = (at, exp)
            self._schedule(index, key, exp)
            return True
        old_at, old_exp = old
        if old_at >= at and old_exp >= exp:
            return False
        source[key] = (max(old_at, at), max(old_exp, exp))
        if exp > old_exp:
            self._schedule(index, key, exp)
        return True

    def _sweep(self, now: float, budget: int | None) -> int:
        """Reclaim keys from buckets that lie wholly before ``now``."""
        g = self._granularity
        heap, wheel, dicts = self._heap, self._wheel, self._dicts
        dropped = 0
        while heap and (heap[0] // _KINDS + 1) * g <= now:
            wheel_key = heap[0]
            keys = wheel.get(wheel_key, [])
            index = wheel_key % _KINDS
            source = dicts[index]
            while keys:
                if budget is not None:
                    if budget <= 0:
                        self._next_due = now  # unfinished: continue on the next apply
                        return dropped
                    budget -= 1
                key = keys.pop()
                value = source.get(key)
                if value is not None:
                    exp = value if index < _FIRST_TIMED else value[1]
                    if exp <= now:
                        del source[key]
                        dropped += 1
            heapq.heappop(heap)
            wheel.pop(wheel_key, None)
        self._next_due = (heap[0] // _KINDS + 1) * g if heap else math.inf
        return dropped

    # -------------------------------------------------------------- snapshots

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able copy of every entry (expired ones included until swept).

        Facts about one tenant are listed under ``"scoped"`` as ``[kind, tenant, id,
        time or null, expires_at]``; the "any tenant" entries are rebuilt from them.
        """
        plain: list[dict[str, Any]] = [{} for _ in ENTRY_KINDS]
        scoped: list[list[Any]] = []
        for index, source in enumerate(self._dicts):
            for key, value in source.copy().items():
                if isinstance(key, str):
                    plain[index][key] = value if index < _FIRST_TIMED else list(value)
                elif key[0] is not None:
                    at, exp = (None, value) if index < _FIRST_TIMED else value
                    scoped.append([ENTRY_KINDS[index], key[0], key[1], at, exp])
        sessions, tokens, subjects, changed, kids, clients = plain
        return {
            "v": SNAPSHOT_VERSION,
            "sessions": sessions,
            "tokens": tokens,
            "subjects": subjects,
            "claims": changed,
            "credentials": {
                CredentialKind.SIGNING_KEY.value: kids,
                CredentialKind.CLIENT.value: clients,
            },
            "scoped": scoped,
        }

    @classmethod
    def from_snapshot(
        cls, data: Mapping[str, Any], *, now: float | None = None, granularity: float = 1.0
    ) -> RevocationState:
        """Rebuild a state from :meth:`snapshot` output, skipping expired entries.

        Raises :class:`~consumers.exceptions.SnapshotError` when ``data`` is not
        a snapshot this code wrote (version 1, before tenants, or 2).
        """
        if now is None:
            now = time.time()
        if not isinstance(data, Mapping) or data.get("v") not in (1, SNAPSHOT_VERSION):
            raise SnapshotError(f"not a revocation-state snapshot v1 or v{SNAPSHOT_VERSION}")
        state = cls(granularity=granularity)
        credentials = data.get("credentials", {})
        if not isinstance(credentials, Mapping):
            raise SnapshotError("snapshot field 'credentials' must be an object")
        sections: list[tuple[int, str, Any]] = [
            (_SESSIONS, "sessions", data.get("sessions", {})),
            (_TOKENS, "tokens", data.get("tokens", {})),
            (_SUBJECTS, "subjects", data.get("subjects", {})),
            (_CLAIMS, "claims", data.get("claims", {})),
            (_KIDS, "credentials.kid", credentials.get(CredentialKind.SIGNING_KEY.value, {})),
            (_CLIENTS, "credentials.client_id", credentials.get(CredentialKind.CLIENT.value, {})),
        ]
        for index, name, section in sections:
            if not isinstance(section, Mapping):
                raise SnapshotError(f"snapshot field {name!r} must be an object")
            try:
                for key, value in section.items():
                    if index < _FIRST_TIMED:
                        exp = float(value)
                        if exp > now:
                            state._add_id(index, str(key), exp)
                    else:
                        at, exp = (float(v) for v in value)
                        if exp > now:
                            state._add_time(index, str(key), at, exp)
            except (TypeError, ValueError):
                raise SnapshotError(f"snapshot field {name!r} has a malformed entry") from None
        scoped = data.get("scoped", [] if data["v"] == 1 else None)
        if not isinstance(scoped, list):
            raise SnapshotError("snapshot field 'scoped' must be an array")
        for i, item in enumerate(scoped):
            try:
                kind, tenant, ident, at, exp = item
                if not isinstance(tenant, str) or not isinstance(ident, str):
                    raise TypeError("tenant and id must be strings")
                state.add(
                    str(kind),
                    ident,
                    float(exp),
                    None if at is None else float(at),
                    now=now,
                    tenant=tenant,
                )
            except (TypeError, ValueError):
                raise SnapshotError(f"snapshot field 'scoped' entry {i} is malformed") from None
        return state


def _iso(epoch: float) -> str:
    """An epoch time for people: ISO 8601 UTC to the millisecond (decisions only, off the
    hot path of an allowed token)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
