"""The event contract: what can be revoked, and the envelope every event travels in.

Guarantees this module gives, and every consumer relies on:

* **Revocations only grow.** No event type "un-revokes". Each one adds a fact to a
  join-semilattice (a revoked id, or a time to take the maximum of), so applying
  events twice or out of order gives the same state.
* **Every fact carries its own end.** ``expires_at`` is when the credential the
  event guards would have expired anyway; after it the fact can be forgotten.
* **Events are immutable and strict.** Models are frozen, unknown fields are
  rejected, datetimes must carry a timezone (revocation times are compared across
  machines).

A heartbeat rides the same topic and envelope; it revokes nothing and tells a
consumer how fresh its view of one partition is.

    >>> ev = SessionRevoked(subject=Subject(id="u-1", kind="human"),
    ...                     session_id="s-42", expires_at=in_seconds(3600))
    >>> env = Envelope.wrap(ev, issuer="iam.example")
    >>> env.event.type
    'session.revoked'
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.exceptions import SchemaViolationError

__all__ = [
    "EVENT_TYPES",
    "MAX_CLOCK_SKEW",
    "MAX_TIME",
    "MIN_TIME",
    "SCHEMA_VERSION",
    "ClaimsChanged",
    "CredentialKind",
    "CredentialRotated",
    "Envelope",
    "Event",
    "Heartbeat",
    "RevocationEvent",
    "SessionRevoked",
    "Source",
    "Subject",
    "SubjectKind",
    "SubjectOffboarded",
    "Time",
    "TimeNs",
    "TokenRevoked",
    "in_seconds",
]

SCHEMA_VERSION = 1
"""Version of the envelope. Bumped only for changes old consumers cannot read."""

MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC)
"""No time in an event may be earlier than this (nothing was revoked with revocast before)."""
MAX_TIME = datetime(2100, 1, 1, tzinfo=UTC)
"""No time in an event may be later than this: bounds every datetime and ``*_ns`` field, so
no arithmetic on a time from the topic can overflow (``10**400`` is refused at the schema)."""
MIN_TIME_NS = int(MIN_TIME.timestamp()) * 1_000_000_000
MAX_TIME_NS = int(MAX_TIME.timestamp()) * 1_000_000_000
MAX_CLOCK_SKEW = timedelta(minutes=5)
"""How far ``not_before`` / ``changed_at`` may lie after the envelope's publish time.

A not-before in the future rejects tokens the IdP has not issued yet: a revocation dated
2100 would lock a subject out until 2100 with the scope of a claims change. Only clock skew
between the IAM system and the publisher is allowed."""

# Control characters in ids would forge log lines and confuse every text tool an
# operator pipes the logs through; ids are printable text, nothing else.
_PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f]+$"

_Id = Annotated[str, Field(min_length=1, max_length=256, pattern=_PRINTABLE)]


def _bounded(value: datetime) -> datetime:
    if not MIN_TIME <= value < MAX_TIME:
        raise ValueError(
            f"must lie between {MIN_TIME.date().isoformat()} and {MAX_TIME.date().isoformat()}"
        )
    return value


Time = Annotated[AwareDatetime, AfterValidator(_bounded)]
"""An aware datetime within [MIN_TIME, MAX_TIME)."""
TimeNs = Annotated[int, Field(ge=MIN_TIME_NS, lt=MAX_TIME_NS)]
"""Epoch nanoseconds within [MIN_TIME, MAX_TIME)."""


def in_seconds(seconds: float) -> datetime:
    """An aware UTC datetime ``seconds`` from now (a convenience for ``expires_at``)."""
    return datetime.now(UTC) + timedelta(seconds=seconds)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SubjectKind(StrEnum):
    HUMAN = "human"
    SERVICE_ACCOUNT = "service_account"
    AI_AGENT = "ai_agent"


class Subject(_Model):
    """Who the revocation is about: a person, a service account or an AI agent.

    ``id`` is what tokens carry in ``sub`` (and, for delegation, in ``act.sub``,
    ``azp`` or ``client_id``).
    """

    id: _Id
    kind: SubjectKind
    tenant: _Id | None = None


class Source(_Model):
    """Where a revocation came from: the chain IdP → request/SET → event.

    Set by the ingress that built the event (``channel``: ``api``, ``cli``, ``scim``,
    ``ssf``…); informational only, never used to decide anything.
    """

    channel: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
    origin: _Id | None = Field(
        default=None, description="Who asked: SSF transmitter issuer, SCIM client, API token."
    )
    ref: _Id | None = Field(
        default=None, description="The origin's id of the request: SET jti, SCIM resource id."
    )
    txn: _Id | None = Field(default=None, description="SET ``txn``: the IdP's transaction id.")
    toe: Time | None = Field(
        default=None, description="SET ``toe``: when the event happened at the origin."
    )
    received_at: Time | None = Field(
        default=None, description="When revocast received the request from the origin."
    )


class _Revocation(_Model):
    subject: Subject
    source: Source | None = Field(
        default=None, description="Where the revocation came from (audit, status)."
    )
    expires_at: Time = Field(
        description="When the credential this event guards expires anyway; the fact "
        "can be forgotten after it.",
    )
    reason: Annotated[str, Field(max_length=512)] | None = Field(
        default=None, description="Free text for humans and audit logs."
    )


class SessionRevoked(_Revocation):
    """A session ends now: every token carrying ``sid == session_id`` is rejected."""

    type: Literal["session.revoked"] = "session.revoked"
    session_id: _Id


class TokenRevoked(_Revocation):
    """One token is rejected: the one carrying ``jti == jti``."""

    type: Literal["token.revoked"] = "token.revoked"
    jti: _Id


class SubjectOffboarded(_Revocation):
    """Every token for ``subject`` issued before ``not_before`` is rejected.

    This is how a person, a service account or an agent loses all access at once,
    including tokens in which the subject only appears as an actor or client.
    """

    type: Literal["subject.offboarded"] = "subject.offboarded"
    not_before: Time


class ClaimsChanged(_Revocation):
    """The subject's roles or claims changed at ``changed_at``.

    Tokens issued before it are not revoked but *stale*: a service answers with a
    claims challenge so the client fetches a fresh token.
    """

    type: Literal["claims.changed"] = "claims.changed"
    changed_at: Time
    claims: tuple[Annotated[str, Field(min_length=1, max_length=128)], ...] = Field(
        default=(), description="Names of the claims that changed, e.g. ('roles',)."
    )


class CredentialKind(StrEnum):
    SIGNING_KEY = "kid"
    """A token-signing key: tokens whose JOSE header names this ``kid``."""
    CLIENT = "client_id"
    """An OAuth client or agent credential: tokens whose ``azp``/``client_id`` names it."""


class CredentialRotated(_Revocation):
    """Tokens tied to ``credential_id`` and issued before ``not_before`` are rejected."""

    type: Literal["credential.rotated"] = "credential.rotated"
    credential_id: _Id
    credential_kind: CredentialKind
    not_before: Time


class Heartbeat(_Model):
    """Freshness: "everything on this partition up to here has been published"."""

    type: Literal["heartbeat"] = "heartbeat"
    partition: Annotated[int, Field(ge=0)]
    emitter: _Id


RevocationEvent = (
    SessionRevoked | TokenRevoked | SubjectOffboarded | ClaimsChanged | CredentialRotated
)
Event = Annotated[RevocationEvent | Heartbeat, Field(discriminator="type")]

EVENT_TYPES: dict[str, type[_Model]] = {
    "session.revoked": SessionRevoked,
    "token.revoked": TokenRevoked,
    "subject.offboarded": SubjectOffboarded,
    "claims.changed": ClaimsChanged,
    "credential.rotated": CredentialRotated,
    "heartbeat": Heartbeat,
}


class Envelope(_Model):
    """What travels on the topic: one event, its identity, its publish time.

    ``published_at_ns`` is ``time.time_ns()`` on the publisher: receipts carry the
    apply time in the same unit, so propagation latency is a subtraction.
    """

    v: Literal[1] = 1  # SCHEMA_VERSION
    event_id: uuid.UUID
    published_at_ns: TimeNs
    issuer: _Id
    event: Event

    @field_validator("event_id")
    @classmethod
    def _uuid_version(cls, value: uuid.UUID) -> uuid.UUID:
        if value.version not in (4, 7):
            raise ValueError("event_id must be a UUID version 4 or 7")
        return value

    @model_validator(mode="after")
    def _not_after_publish(self) -> Envelope:
        event = self.event
        limit = self.published_at_ns + int(MAX_CLOCK_SKEW.total_seconds() * 1e9)
        for name in ("not_before", "changed_at"):
            when: datetime | None = getattr(event, name, None)
            if when is not None and _to_ns(when) > limit:
                raise ValueError(
                    f"event.{name} {when.isoformat()} is later than the publish time plus "
                    f"{int(MAX_CLOCK_SKEW.total_seconds())} s of clock skew: a revocation "
                    "cannot take effect in the future"
                )
        return self

    @classmethod
    def wrap(cls, event: RevocationEvent | Heartbeat, *, issuer: str) -> Envelope:
        """A new envelope with a fresh id, stamped with the current time.

        Raises :class:`~schemas.exceptions.SchemaViolationError` naming the field when
        the event cannot be published now (e.g. a ``not_before`` in the future).
        """
        try:
            return cls(
                event_id=uuid.uuid4(), published_at_ns=time.time_ns(), issuer=issuer, event=event
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            field = loc or (msg.split(" ", 1)[0] if msg.startswith("event.") else "envelope")
            raise SchemaViolationError(f"{loc}: {msg}" if loc else msg, field=field) from None

    def lifetime_capped(self, max_lifetime: timedelta) -> Envelope:
        """This envelope with ``expires_at`` at most ``max_lifetime`` after its publish time.

        The events topic retains ``max_lifetime`` plus a margin: a fact kept longer
        than that lives on in long-running consumers but is gone from a restarted
        one's replay, so they would disagree. Publisher and consumers cap alike.
        Returns ``self`` when nothing needs capping (and for heartbeats).
        """
        event = self.event
        if isinstance(event, Heartbeat):
            return self
        cap = self.published_at + max_lifetime
        if event.expires_at <= cap:
            return self
        return self.model_copy(update={"event": event.model_copy(update={"expires_at": cap})})

    def restamped(self) -> Envelope:
        """The same event with ``published_at_ns`` set to now (just before sending)."""
        return self.model_copy(update={"published_at_ns": time.time_ns()})

    @property
    def partition_key(self) -> bytes | None:
        """Kafka key: the subject id, so one subject's events stay in order."""
        event = self.event
        if isinstance(event, Heartbeat):
            return None
        return event.subject.id.encode()

    @property
    def published_at(self) -> datetime:
        return datetime.fromtimestamp(self.published_at_ns / 1e9, tz=UTC)


def _to_ns(when: datetime) -> int:
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
