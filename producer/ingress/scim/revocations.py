"""What a SCIM change means for tokens: which revocation events it publishes.

Pure mapping, no I/O. :class:`~producer.ingress.scim.store.RedisScimStorage` calls
:func:`events_for_user_change` and :func:`claims_changed` with the stored state before and
after a write, publishes what they return, and commits the write only once Kafka
acknowledged every event.

The rules:

* a user going from active (or unset) to ``active: false``, by PATCH (any form) or PUT,
  and ``DELETE /Users/{id}`` -> **SubjectOffboarded** with ``not_before`` = now: every token
  issued before is rejected; reactivation publishes nothing, so tokens issued after it pass;
* a member leaving a group (PATCH remove, PUT with fewer members, DELETE of the group) ->
  **ClaimsChanged** (``claims=("groups",)``) for each user who left, nested groups expanded;
  tokens issued before are stale, and clients fetch fresh ones; additions publish nothing;
* anything else (profile changes, creations) publishes nothing.

Which SCIM attribute is the subject is the SCIM client's ``subject_attribute``; a user who
lacks it cannot be named in a revocation, so the store refuses to keep such a user at all
(:func:`require_subject`, a 400 naming the attribute): fail closed at provisioning time,
not silently at deprovisioning time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from scim2_models import InvalidValueException

from producer.ingress.scim.settings import ScimClient, SubjectAttribute
from schemas import ClaimsChanged, RevocationEvent, Source, Subject, SubjectOffboarded

__all__ = [
    "Provenance",
    "claims_changed",
    "events_for_user_change",
    "require_subject",
    "subject_of",
]

CHANNEL = "scim"


@dataclass(frozen=True)
class Provenance:
    """Who asked and when: the SCIM client and the time the request arrived."""

    client: ScimClient
    received_at: datetime
    lifetime: timedelta
    """How long a credential of these subjects can live: the events' ``expires_at``."""

    def source(self, resource_id: str | None) -> Source:
        return Source(
            channel=CHANNEL,
            origin=self.client.name,
            ref=resource_id,
            received_at=self.received_at,
        )


def _attribute_value(user: Any, attribute: SubjectAttribute) -> Any:
    if attribute is SubjectAttribute.PRIMARY_EMAIL:
        emails = list(getattr(user, "emails", None) or [])
        primary = [e for e in emails if getattr(e, "primary", False)]
        chosen = primary[0] if primary else (emails[0] if len(emails) == 1 else None)
        return getattr(chosen, "value", None) if chosen is not None else None
    field = {"externalId": "external_id", "userName": "user_name", "id": "id"}[attribute.value]
    return getattr(user, field, None)


def _attribute_label(attribute: SubjectAttribute) -> str:
    return "primary emails.value" if attribute is SubjectAttribute.PRIMARY_EMAIL else attribute


def subject_of(user: Any, client: ScimClient) -> Subject | None:
    """The subject ``user`` appears as in tokens, or ``None`` when it lacks the attribute.

    Raises :class:`~scim2_models.InvalidValueException` (400) when the value cannot be a
    subject id (control characters, longer than 256 characters).
    """
    value = _attribute_value(user, client.subject_attribute)
    if value is None or value == "":
        return None
    kind = client.subject_kind
    if client.kind_attribute is not None:
        field = {"userType": "user_type", "title": "title"}[client.kind_attribute]
        kind = client.kind_map.get(str(getattr(user, field, None) or ""), kind)
    try:
        return Subject(id=str(value), kind=kind, tenant=client.tenant)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise InvalidValueException(
            detail=f"{_attribute_label(client.subject_attribute)} cannot be a token subject: "
            f"{problem} (at most 256 printable characters)"
        ) from None


def require_subject(user: Any, client: ScimClient) -> Subject:
    """:func:`subject_of`, refusing (400 invalidValue) a user the client cannot name."""
    subject = subject_of(user, client)
    if subject is None:
        label = _attribute_label(client.subject_attribute)
        raise InvalidValueException(
            detail=f"the user has no {label}: SCIM client {client.name!r} names token subjects "
            f"by {label} (subject_attribute), so this user could never be deprovisioned; "
            "send it, or change the client's subject_attribute"
        )
    return subject


def _deactivated(before: Any | None, after: Any | None) -> bool:
    if before is None:
        return False  # a creation: there is nothing to revoke yet
    if after is None:
        return True  # DELETE
    return getattr(before, "active", None) is not False and getattr(after, "active", None) is False


def events_for_user_change(
    before: Any | None, after: Any | None, provenance: Provenance
) -> list[RevocationEvent]:
    """The events a write of one user publishes (``after`` is ``None`` for DELETE).

    A deactivation names the subject the user had before; when the same write also changed
    the subject attribute, the new subject is offboarded too.
    """
    if not _deactivated(before, after):
        return []
    now = datetime.now(UTC)
    subjects: dict[str, Subject] = {}
    for state in (before, after):
        if state is None:
            continue
        subject = subject_of(state, provenance.client)
        if subject is not None:
            subjects.setdefault(subject.id, subject)
    resource_id = getattr(before, "id", None)
    what = "deleted" if after is None else "deactivated"
    return [
        SubjectOffboarded(
            subject=subject,
            not_before=now,
            expires_at=now + provenance.lifetime,
            reason=f"SCIM: user {what} by {provenance.client.name}",
            source=provenance.source(resource_id),
        )
        for subject in subjects.values()
    ]


def claims_changed(
    users: Iterable[Any], group_id: str | None, group_name: str | None, provenance: Provenance
) -> list[ClaimsChanged]:
    """ClaimsChanged (``groups``) for each of ``users`` who left a group (one per subject)."""
    now = datetime.now(UTC)
    events: dict[str, ClaimsChanged] = {}
    label = f"{group_name!r}" if group_name else f"id {group_id!r}"
    for user in users:
        subject = subject_of(user, provenance.client)
        if subject is None or subject.id in events:
            continue
        events[subject.id] = ClaimsChanged(
            subject=subject,
            changed_at=now,
            claims=("groups",),
            expires_at=now + provenance.lifetime,
            reason=f"SCIM: removed from group {label} by {provenance.client.name}"[:512],
            source=provenance.source(group_id),
        )
    return list(events.values())
