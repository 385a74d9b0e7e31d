"""What an IAM system or an operator asks for, validated once for the CLI and the HTTP API.

A request names the subject and what to revoke; :meth:`RevokeRequest.to_event`
turns it into the :mod:`schemas` event, filling in defaults (``expires_at`` from the
default credential lifetime, ``not_before``/``changed_at`` = now).

Guarantee: a revocation whose ``expires_at`` lies further ahead than the longest
credential lifetime the topic retains is refused (:class:`~schemas.SchemaViolationError`
naming ``expires_at``): the topic would forget it while the credential it revokes is
still valid, and a restarted consumer would accept that credential again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas import (
    ClaimsChanged,
    CredentialKind,
    CredentialRotated,
    RevocationEvent,
    SchemaViolationError,
    SessionRevoked,
    Subject,
    SubjectOffboarded,
    TokenRevoked,
)

__all__ = [
    "REQUEST_TYPES",
    "ClaimsRevokeRequest",
    "CredentialRevokeRequest",
    "RevokeRequest",
    "SessionRevokeRequest",
    "SubjectRevokeRequest",
    "TokenRevokeRequest",
    "parse_request",
]

_Id = Annotated[str, Field(min_length=1, max_length=256)]

MAX_EXPIRES_IN = 100 * 365 * 24 * 3600.0
"""A bound far past any credential lifetime, so ``now + expires_in`` can never overflow;
the configured longest lifetime is then checked against the result."""


class RevokeRequest(BaseModel):
    """Fields every revocation request has."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: ClassVar[str]

    subject: Subject
    reason: Annotated[str, Field(max_length=512)] | None = Field(
        default=None, description="Free text for humans and audit logs."
    )
    expires_at: AwareDatetime | None = Field(
        default=None,
        description="When the revoked credential expires anyway. Default: now + the "
        "configured default credential lifetime.",
    )
    expires_in: Annotated[float, Field(gt=0, le=MAX_EXPIRES_IN, allow_inf_nan=False)] | None = (
        Field(default=None, description="Seconds from now; an alternative to expires_at.")
    )

    @model_validator(mode="after")
    def _one_expiry(self) -> RevokeRequest:
        if self.expires_at is not None and self.expires_in is not None:
            raise ValueError("give expires_at or expires_in, not both")
        return self

    def _expires_at(self, now: datetime, default_lifetime: timedelta) -> datetime:
        if self.expires_at is not None:
            return self.expires_at
        if self.expires_in is not None:
            return now + timedelta(seconds=self.expires_in)
        return now + default_lifetime

    def _event(self, now: datetime, expires_at: datetime) -> RevocationEvent:
        raise NotImplementedError

    def to_event(
        self,
        *,
        default_lifetime: timedelta,
        max_lifetime: timedelta,
        now: datetime | None = None,
    ) -> RevocationEvent:
        """The event to publish, or a :class:`SchemaViolationError` naming the field."""
        now = now or datetime.now(UTC)
        field = "expires_in" if self.expires_in is not None else "expires_at"
        try:
            expires_at = self._expires_at(now, default_lifetime)
        except OverflowError:
            raise SchemaViolationError(f"{field}: is too far ahead", field=field) from None
        if expires_at <= now:
            raise SchemaViolationError(
                "expires_at: is in the past: the credential has already expired, there is "
                "nothing to revoke",
                field="expires_at",
            )
        if expires_at - now > max_lifetime:
            raise SchemaViolationError(
                f"{field}: is more than the longest credential lifetime ({max_lifetime}) "
                "ahead: the events topic would forget this revocation while the credential is "
                "still valid; raise REVOCAST_MAX_CREDENTIAL_LIFETIME (and the topic retention)",
                field=field,
            )
        try:
            return self._event(now, expires_at)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise SchemaViolationError(f"{field}: {err['msg']}", field=field) from None


class SessionRevokeRequest(RevokeRequest):
    """End one session: every token with ``sid == session_id``."""

    kind: ClassVar[str] = "session"
    session_id: _Id

    def _event(self, now: datetime, expires_at: datetime) -> RevocationEvent:
        return SessionRevoked(
            subject=self.subject,
            session_id=self.session_id,
            expires_at=expires_at,
            reason=self.reason,
        )


class TokenRevokeRequest(RevokeRequest):
    """Reject one token: the one with ``jti == jti``."""

    kind: ClassVar[str] = "token"
    jti: _Id

    def _event(self, now: datetime, expires_at: datetime) -> RevocationEvent:
        return TokenRevoked(
            subject=self.subject, jti=self.jti, expires_at=expires_at, reason=self.reason
        )


class SubjectRevokeRequest(RevokeRequest):
    """Offboard a subject: reject every token of it issued before ``not_before`` (default now)."""

    kind: ClassVar[str] = "subject"
    not_before: AwareDatetime | None = None

    def _event(self, now: datetime, expires_at: datetime) -> RevocationEvent:
        return SubjectOffboarded(
            subject=self.subject,
            not_before=self.not_before or now,
            expires_at=expires_at,
            reason=self.reason,
        )


class ClaimsRevokeRequest(RevokeRequest):
    """The subject's claims changed at ``changed_at`` (default now): older tokens are stale."""

    kind: ClassVar[str] = "claims"
    changed_at: AwareDatetime | None = None
    claims: tuple[Annotated[str, Field(min_length=1, max_length=128)], ...] = ()

    def _event(self, now: datetime, expires_at: datetime) -> RevocationEvent:
        return ClaimsChanged(
            subject=self.subject,
            changed_at=self.changed_at or now,
            claims=self.claims,
            expires_at=expires_at,
            reason=self.reason,
        )


class CredentialRevokeRequest(RevokeRequest):
    """A signing key or client credential was rotated: older tokens tied to it are rejected."""

    kind: ClassVar[str] = "credential"
    credential_id: _Id
    credential_kind: CredentialKind
    not_before: AwareDatetime | None = None

    def _event(self, now: datetime, expires_at: datetime) -> RevocationEvent:
        return CredentialRotated(
            subject=self.subject,
            credential_id=self.credential_id,
            credential_kind=self.credential_kind,
            not_before=self.not_before or now,
            expires_at=expires_at,
            reason=self.reason,
        )


REQUEST_TYPES: dict[str, type[RevokeRequest]] = {
    cls.kind: cls
    for cls in (
        SessionRevokeRequest,
        TokenRevokeRequest,
        SubjectRevokeRequest,
        ClaimsRevokeRequest,
        CredentialRevokeRequest,
    )
}


def parse_request(kind: str, data: object) -> RevokeRequest:
    """Validate ``data`` as a ``kind`` request, or raise :class:`SchemaViolationError`."""
    cls = REQUEST_TYPES.get(kind)
    if cls is None:
        raise SchemaViolationError(
            f"kind: unknown revocation kind {kind!r} (one of {', '.join(REQUEST_TYPES)})",
            field="kind",
        )
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "body"
        msg = err["msg"].removeprefix("Value error, ")
        raise SchemaViolationError(f"{field}: {msg}", field=field) from None
