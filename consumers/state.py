"""The in-process view of what is revoked: a join-semilattice of expiring facts.

:class:`RevocationState` holds six kinds of facts, each keyed by one string:

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
from enum import StrEnum
from typing import Any, Final, NamedTuple

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
    "ENTRY_KINDS",
    "SNAPSHOT_VERSION",
    "Decision",
    "RevocationState",
    "Rule",
    "Verdict",
]

SNAPSHOT_VERSION: Final = 1

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


class RevocationState:
    """What is revoked, as seen by this process. See the module docstring.

    ``granularity`` is the width (seconds) of a timing-wheel bucket: an expired
    fact is reclaimed by ``apply`` at most about that long after it expires (a
    lookup ignores it from the first moment).
    """

    __slots__ = ("_dicts", "_granularity", "_heap", "_next_due", "_wheel")

    def __init__(self, *, granularity: float = 1.0) -> None:
        if not granularity > 0:
            raise ValueError("granularity must be positive")
        self._granularity = float(granularity)
        self._dicts: tuple[dict[str, Any], ...] = tuple({} for _ in ENTRY_KINDS)
        # Timing wheel: wheel key -> keys whose expiry falls in that bucket; a
        # heap of wheel keys gives the next bucket due.
        self._wheel: dict[int, list[str]] = {}
        self._heap: list[int] = []
        self._next_due = math.inf

    # ------------------------------------------------------------------ reads

    def check(
        self,
        claims: Mapping[str, Any],
        header: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> Decision:
        """Decide whether a token with these (already verified) claims is revoked.

        Rules, first match wins: ``sid`` revoked; ``jti`` revoked; ``sub``
        offboarded and ``iat`` before its not-before; header ``kid`` rotated;
        ``azp``/``client_id`` rotated (``credential_rotated``) or offboarded
        (``delegation_revoked``); any subject in the ``act`` chain offboarded
        (``delegation_revoked``); ``sub`` claims changed after ``iat``
        (:attr:`Verdict.STALE_CLAIMS`). A token without ``iat`` fails every
        time-based rule it meets.
        """
        # Hot path: plain dict lookups only, written out rather than looped.
        if now is None:
            now = _now()
        sessions, tokens, subjects, changed, kids, _clients = self._dicts
        get = claims.get
        try:
            sid = get("sid")
            if sid is not None:
                exp = sessions.get(sid)
                if exp is not None and exp > now:
                    return _revoked(_SESSION_REVOKED, f"session {sid!r} is revoked")
            jti = get("jti")
            if jti is not None:
                exp = tokens.get(jti)
                if exp is not None and exp > now:
                    return _revoked(_TOKEN_REVOKED, f"token {jti!r} is revoked")
            iat = get("iat")
            sub = get("sub")
            if sub is not None:
                entry = subjects.get(sub)
                if entry is not None and entry[1] > now and (iat is None or iat < entry[0]):
                    return _revoked(
                        _SUBJECT_OFFBOARDED,
                        f"subject {sub!r} was offboarded; token issued before {entry[0]:.3f}",
                        entry[0],
                    )
            if header is not None:
                kid = header.get("kid")
                if kid is not None:
                    entry = kids.get(kid)
                    if entry is not None and entry[1] > now and (iat is None or iat < entry[0]):
                        return _revoked(
                            _CREDENTIAL_ROTATED,
                            f"signing key {kid!r} was rotated; token issued before {entry[0]:.3f}",
                            entry[0],
                        )
            azp = get("azp")
            if azp is not None:
                decision = self._check_client("azp", azp, iat, now)
                if decision is not None:
                    return decision
            client_id = get("client_id")
            if client_id is not None:
                decision = self._check_client("client_id", client_id, iat, now)
                if decision is not None:
                    return decision
            act = get("act")
            if act is not None and subjects:  # nothing offboarded: no chain to walk
                decision = self._check_act(act, iat, now)
                if decision is not None:
                    return decision
            if sub is not None:
                entry = changed.get(sub)
                if entry is not None and entry[1] > now and (iat is None or iat < entry[0]):
                    return Decision(
                        Verdict.STALE_CLAIMS,
                        Rule.CLAIMS_CHANGED,
                        f"claims of {sub!r} changed at {entry[0]:.3f}, after the token was issued",
                        entry[0],
                    )
        except TypeError:
            # An unhashable claim (a list as `sid`...) or a non-numeric `iat`: no
            # well-formed token looks like this, so fail closed.
            return _revoked(Rule.MALFORMED_CLAIMS, "a claim has an unexpected type")
        return ALLOW

    def _check_client(self, role: str, client: Any, iat: Any, now: float) -> Decision | None:
        """``azp``/``client_id``: its credential rotated, or the client itself offboarded."""
        entry = self._dicts[_CLIENTS].get(client)
        if entry is not None and entry[1] > now and _issued_before(iat, entry[0]):
            return _revoked(
                Rule.CREDENTIAL_ROTATED,
                f"client {client!r} credential was rotated; token issued before {entry[0]:.3f}",
                entry[0],
            )
        entry = self._dicts[_SUBJECTS].get(client)
        if entry is not None and entry[1] > now and _issued_before(iat, entry[0]):
            return _revoked(
                Rule.DELEGATION_REVOKED,
                f"{role} {client!r} was offboarded; token issued before {entry[0]:.3f}",
                entry[0],
            )
        return None

    def _check_act(self, act: Any, iat: Any, now: float) -> Decision | None:
        """RFC 8693 ``act``: every actor in the (nested) chain, by ``sub`` and ``client_id``."""
        subjects = self._dicts[_SUBJECTS]
        depth = 0
        while isinstance(act, Mapping):
            depth += 1
            if depth > _MAX_ACT_DEPTH:
                return _revoked(
                    Rule.DELEGATION_REVOKED, f"act chain deeper than {_MAX_ACT_DEPTH} levels"
                )
            for role in ("sub", "client_id"):
                actor = act.get(role)
                if actor is None:
                    continue
                entry = subjects.get(actor)
                if entry is not None and entry[1] > now and _issued_before(iat, entry[0]):
                    return _revoked(
                        Rule.DELEGATION_REVOKED,
                        f"actor {actor!r} (act level {depth}) was offboarded; token issued "
                        f"before {entry[0]:.3f}",
                        entry[0],
                    )
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
        if exp <= now:
            return False
        if isinstance(event, SessionRevoked):
            return self._add_id(_SESSIONS, event.session_id, exp)
        if isinstance(event, TokenRevoked):
            return self._add_id(_TOKENS, event.jti, exp)
        if isinstance(event, SubjectOffboarded):
            return self._add_time(_SUBJECTS, event.subject.id, event.not_before.timestamp(), exp)
        if isinstance(event, ClaimsChanged):
            return self._add_time(_CLAIMS, event.subject.id, event.changed_at.timestamp(), exp)
        if isinstance(event, CredentialRotated):
            index = _KIDS if event.credential_kind is CredentialKind.SIGNING_KEY else _CLIENTS
            return self._add_time(index, event.credential_id, event.not_before.timestamp(), exp)
        raise TypeError(f"not a revocation event: {type(event).__name__}")

    def add(
        self,
        kind: str,
        key: str,
        expires_at: float,
        at: float | None = None,
        now: float | None = None,
    ) -> bool:
        """Join one raw fact (as stored in Redis or a snapshot); ``True`` if it changed.

        ``kind`` is one of :data:`ENTRY_KINDS`; ``at`` (the not-before or
        claims-changed time) is required for every kind but sessions and tokens.
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
        if at is None or index < _FIRST_TIMED:
            return self._add_id(index, key, expires_at)
        return self._add_time(index, key, at, expires_at)

    def merge(self, other: RevocationState, now: float | None = None) -> bool:
        """Join ``other`` into this state (entries expired at ``now`` are skipped)."""
        if now is None:
            now = time.time()
        changed = False
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

    def _schedule(self, index: int, key: str, exp: float) -> None:
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

    def _add_id(self, index: int, key: str, exp: float) -> bool:
        source = self._dicts[index]
        old = source.get(key)
        if old is not None and old >= exp:
            return False
        source[key] = exp
        self._schedule(index, key, exp)
        return True

    def _add_time(self, index: int, key: str, at: float, exp: float) -> bool:
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
        """A JSON-able copy of every entry (expired ones included until swept)."""
        sessions, tokens, subjects, changed, kids, clients = (d.copy() for d in self._dicts)
        return {
            "v": SNAPSHOT_VERSION,
            "sessions": sessions,
            "tokens": tokens,
            "subjects": {k: list(v) for k, v in subjects.items()},
            "claims": {k: list(v) for k, v in changed.items()},
            "credentials": {
                CredentialKind.SIGNING_KEY.value: {k: list(v) for k, v in kids.items()},
                CredentialKind.CLIENT.value: {k: list(v) for k, v in clients.items()},
            },
        }

    @classmethod
    def from_snapshot(
        cls, data: Mapping[str, Any], *, now: float | None = None, granularity: float = 1.0
    ) -> RevocationState:
        """Rebuild a state from :meth:`snapshot` output, skipping expired entries.

        Raises :class:`~consumers.exceptions.SnapshotError` when ``data`` is not
        a snapshot this code wrote.
        """
        if now is None:
            now = time.time()
        if not isinstance(data, Mapping) or data.get("v") != SNAPSHOT_VERSION:
            raise SnapshotError(f"not a revocation-state snapshot v{SNAPSHOT_VERSION}")
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
        return state
