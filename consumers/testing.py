"""Helpers for a service's own unit tests: revocations without Kafka.

:class:`InMemoryRevocations` builds real :class:`schemas.Envelope` objects for
the five revocation types and applies them to a :class:`RevocationState`, the
same way a consumer would after decoding them. Hand its ``state`` to a
:class:`~consumers.verifier.Verifier` and test that your endpoints reject what
they should.

    revocations = InMemoryRevocations()
    verifier = Verifier(public_key, state=revocations.state, algorithms=["ES256"])
    revocations.revoke_session("s-42", subject="u-1")
    with pytest.raises(RevokedTokenError):
        verifier.verify(token_with_sid_s42)

:func:`measure_bootstrap` times a new instance from start to ready, cold or from a
snapshot (the benchmark's ``bootstrap_ready_s``).

Guarantee: the envelopes are schema-valid (built through the models), so a test
that passes here exercises the same rules as production. Not a substitute for
an integration test of your consumer wiring.
"""

from __future__ import annotations

import resource
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from consumers.freshness import FreshnessGuard
from consumers.state import RevocationState
from consumers.stores import SnapshotStore
from schemas import (
    ClaimsChanged,
    CredentialKind,
    CredentialRotated,
    Envelope,
    KeySet,
    RevocationEvent,
    SessionRevoked,
    Subject,
    SubjectKind,
    SubjectOffboarded,
    TokenRevoked,
    TopicNames,
)

__all__ = ["AlwaysFresh", "BootstrapResult", "InMemoryRevocations", "measure_bootstrap"]


def _when(at: datetime | float | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    if isinstance(at, datetime):
        return at
    return datetime.fromtimestamp(at, tz=UTC)


class InMemoryRevocations:
    """Publish revocations straight into a :class:`RevocationState` (no broker).

    Every method returns the envelope it applied; ``published`` lists them all.
    ``lifetime`` is the default ``expires_at`` distance (seconds).
    """

    def __init__(
        self,
        state: RevocationState | None = None,
        *,
        issuer: str = "tests",
        lifetime: float = 3600.0,
    ) -> None:
        self.state = state if state is not None else RevocationState()
        self.issuer = issuer
        self.lifetime = lifetime
        self.published: list[Envelope] = []

    def _subject(self, subject: str, kind: SubjectKind | str, tenant: str | None) -> Subject:
        """``tenant`` scopes the fact to tokens of that tenant; ``None``: every tenant."""
        return Subject(id=subject, kind=SubjectKind(kind), tenant=tenant)

    def _expiry(self, expires_in: float | None) -> datetime:
        return datetime.now(UTC) + timedelta(
            seconds=self.lifetime if expires_in is None else expires_in
        )

    def publish(self, event: RevocationEvent) -> Envelope:
        envelope = Envelope.wrap(event, issuer=self.issuer)
        self.state.apply(envelope)
        self.published.append(envelope)
        return envelope

    def revoke_session(
        self,
        session_id: str,
        *,
        subject: str = "user-1",
        kind: SubjectKind | str = SubjectKind.HUMAN,
        tenant: str | None = None,
        expires_in: float | None = None,
    ) -> Envelope:
        return self.publish(
            SessionRevoked(
                subject=self._subject(subject, kind, tenant),
                session_id=session_id,
                expires_at=self._expiry(expires_in),
            )
        )

    def revoke_token(
        self,
        jti: str,
        *,
        subject: str = "user-1",
        kind: SubjectKind | str = SubjectKind.HUMAN,
        tenant: str | None = None,
        expires_in: float | None = None,
    ) -> Envelope:
        return self.publish(
            TokenRevoked(
                subject=self._subject(subject, kind, tenant),
                jti=jti,
                expires_at=self._expiry(expires_in),
            )
        )

    def offboard(
        self,
        subject: str,
        *,
        kind: SubjectKind | str = SubjectKind.HUMAN,
        tenant: str | None = None,
        not_before: datetime | float | None = None,
        expires_in: float | None = None,
    ) -> Envelope:
        """Every token for (or acting through) ``subject`` issued before ``not_before``."""
        return self.publish(
            SubjectOffboarded(
                subject=self._subject(subject, kind, tenant),
                not_before=_when(not_before),
                expires_at=self._expiry(expires_in),
            )
        )

    def change_claims(
        self,
        subject: str,
        *,
        kind: SubjectKind | str = SubjectKind.HUMAN,
        tenant: str | None = None,
        changed_at: datetime | float | None = None,
        claims: tuple[str, ...] = ("roles",),
        expires_in: float | None = None,
    ) -> Envelope:
        return self.publish(
            ClaimsChanged(
                subject=self._subject(subject, kind, tenant),
                changed_at=_when(changed_at),
                claims=claims,
                expires_at=self._expiry(expires_in),
            )
        )

    def rotate_credential(
        self,
        credential_id: str,
        *,
        credential_kind: CredentialKind | str = CredentialKind.SIGNING_KEY,
        subject: str = "iam",
        kind: SubjectKind | str = SubjectKind.SERVICE_ACCOUNT,
        tenant: str | None = None,
        not_before: datetime | float | None = None,
        expires_in: float | None = None,
    ) -> Envelope:
        return self.publish(
            CredentialRotated(
                subject=self._subject(subject, kind, tenant),
                credential_id=credential_id,
                credential_kind=CredentialKind(credential_kind),
                not_before=_when(not_before),
                expires_at=self._expiry(expires_in),
            )
        )


class AlwaysFresh(FreshnessGuard):
    """A freshness guard that is ready and fresh: for unit tests of privileged routes."""

    def __init__(self) -> None:
        super().__init__(max_staleness=1.0)
        self.mark_ready()

    def denial(self, now: float | None = None) -> str | None:
        return None


@dataclass(frozen=True)
class BootstrapResult:
    """How long a new instance took to become ready (see :func:`measure_bootstrap`)."""

    engine: str
    ready: bool
    ready_s: float
    """From construction to ``ready`` (connect, snapshot load, replay of the rest)."""
    from_snapshot: bool
    records: int
    """Records read from the topic on the way (the tail, when warmed from a snapshot)."""
    entries: int
    """Facts in the view once ready."""
    snapshot_records: int | None = None
    """Offsets the snapshot covered (records not read again), when one was used."""
    cpu_s: float | None = None
    """CPU seconds of this process until ready (``getrusage``, every thread): with the
    machine shared, ``records / cpu_s`` is the steadier figure."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_bootstrap(
    bootstrap_servers: str,
    topics: TopicNames,
    keys: KeySet | None,
    *,
    engine: str = "kafka-python",
    snapshots: SnapshotStore | None = None,
    timeout: float = 900.0,
    **options: Any,
) -> BootstrapResult:
    """Start a fresh consumer, time it until ready, stop it; the ``bootstrap_ready_s``
    figure (a new instance joining with the topic's whole retained history).

    Without ``snapshots`` (or with an empty store) it is a cold start: every retained
    record is replayed. With a store holding a snapshot of this topic (same topic id),
    the state is loaded from it and only the records after its offsets are read. The
    stop saves a snapshot to ``snapshots`` (any snapshot is consistent with its offsets,
    even of a replay cut short), so a cold run followed by a second call measures both: ::

        cold = measure_bootstrap(bootstrap, topics, keys, snapshots=store)  # saves one
        warm = measure_bootstrap(bootstrap, topics, keys, snapshots=store)
        cold.ready_s, warm.ready_s
    """
    from consumers.consumer import RevocationConsumer

    started, cpu = time.monotonic(), _cpu_s()
    consumer = RevocationConsumer(
        bootstrap_servers,
        topics,
        "bootstrap",
        f"bootstrap-{uuid.uuid4().hex[:8]}",
        keys,
        engine=engine,
        snapshots=snapshots,
        snapshot_interval=max(timeout, 3600.0),  # one snapshot, saved by stop()
        publish_receipts=False,
        registry=CollectorRegistry(),
        **options,
    )
    try:
        consumer.start()
        ready = consumer.wait_ready(timeout)
        ready_s, cpu_s = time.monotonic() - started, _cpu_s() - cpu
        warmed = consumer.warmed_from
        result = BootstrapResult(
            engine=engine,
            ready=ready,
            ready_s=round(ready_s, 3),
            from_snapshot=warmed is not None,
            records=consumer.stats().records,
            entries=len(consumer.state),
            snapshot_records=sum(warmed.offsets.values()) if warmed is not None else None,
            cpu_s=round(cpu_s, 3),
        )
    finally:
        consumer.stop(timeout=120)
    return result
