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

Guarantee: the envelopes are schema-valid (built through the models), so a test
that passes here exercises the same rules as production. Not a substitute for
an integration test of your consumer wiring.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from consumers.freshness import FreshnessGuard
from consumers.state import RevocationState
from schemas import (
    ClaimsChanged,
    CredentialKind,
    CredentialRotated,
    Envelope,
    RevocationEvent,
    SessionRevoked,
    Subject,
    SubjectKind,
    SubjectOffboarded,
    TokenRevoked,
)

__all__ = ["AlwaysFresh", "InMemoryRevocations"]


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

    def _subject(self, subject: str, kind: SubjectKind | str) -> Subject:
        return Subject(id=subject, kind=SubjectKind(kind))

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
        expires_in: float | None = None,
    ) -> Envelope:
        return self.publish(
            SessionRevoked(
                subject=self._subject(subject, kind),
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
        expires_in: float | None = None,
    ) -> Envelope:
        return self.publish(
            TokenRevoked(
                subject=self._subject(subject, kind), jti=jti, expires_at=self._expiry(expires_in)
            )
        )

    def offboard(
        self,
        subject: str,
        *,
        kind: SubjectKind | str = SubjectKind.HUMAN,
        not_before: datetime | float | None = None,
        expires_in: float | None = None,
    ) -> Envelope:
        """Every token for (or acting through) ``subject`` issued before ``not_before``."""
        return self.publish(
            SubjectOffboarded(
                subject=self._subject(subject, kind),
                not_before=_when(not_before),
                expires_at=self._expiry(expires_in),
            )
        )

    def change_claims(
        self,
        subject: str,
        *,
        kind: SubjectKind | str = SubjectKind.HUMAN,
        changed_at: datetime | float | None = None,
        claims: tuple[str, ...] = ("roles",),
        expires_in: float | None = None,
    ) -> Envelope:
        return self.publish(
            ClaimsChanged(
                subject=self._subject(subject, kind),
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
        not_before: datetime | float | None = None,
        expires_in: float | None = None,
    ) -> Envelope:
        return self.publish(
            CredentialRotated(
                subject=self._subject(subject, kind),
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
