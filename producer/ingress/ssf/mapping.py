"""CAEP / RISC / SSF events → revocast events (pure: no I/O, no clock but the SET's).

:func:`plan` reads a validated SET and says, per event in it, what to publish and what only
to log. The table (every CAEP 1.0 and RISC 1.0 type is in
:data:`producer.ingress.ssf.vocabulary.EVENT_TYPES`):

=============================  ===========================================================
CAEP session-revoked           SessionRevoked (session named) or SubjectOffboarded (only a
                               user named); TokenRevoked for a jwt_id / SAML assertion
CAEP token-claims-change       ClaimsChanged (names of the changed claims)
CAEP credential-change         CredentialRotated(client_id = application or subject);
                               ``change_type: create`` logged only
RISC account-disabled,         SubjectOffboarded(not_before = received)
account-purged,
credential-compromise,
sessions-revoked
CAEP assurance-level-change,   ClaimsChanged, only for types in ``apply_optional``
risk-level-change,
device-compliance-change
every other known type         acknowledged, logged, never applied
unknown types                  acknowledged, logged, never applied
SSF verification,              handled by the receiver (state check, stream status)
stream-updated
=============================  ===========================================================

Guarantees: every event carries ``source`` (channel ``ssf``, the transmitter's issuer, the
SET's ``jti``, ``txn``, ``toe``, when it was received) and ``expires_at`` = received +
the transmitter's ``max_credential_lifetime``; not-before / changed-at times are the
receive time (never the SET's claimed times: a transmitter cannot date a revocation into the
future or the past). An applied type whose subject maps to nothing revocable is refused
(``invalid_request``) rather than acknowledged and dropped. The schema's refusals (ids too
long or unprintable, times out of bounds) become ``invalid_request`` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError

from producer.ingress.ssf.exceptions import SetRejected, escape
from producer.ingress.ssf.settings import TransmitterConfig
from producer.ingress.ssf.subjects import SubjectRef, find_subject, resolve
from producer.ingress.ssf.validation import ValidatedSet
from producer.ingress.ssf.vocabulary import CAEP, EVENT_TYPES, Action, short_name
from schemas import (
    ClaimsChanged,
    CredentialKind,
    CredentialRotated,
    RevocationEvent,
    SessionRevoked,
    Source,
    Subject,
    SubjectKind,
    SubjectOffboarded,
    TokenRevoked,
)

__all__ = ["Control", "Plan", "plan"]

MAX_CLAIM_NAMES: Final = 32
_OPTIONAL_CLAIMS: Final[dict[str, tuple[str, ...]]] = {
    "assurance-level-change": ("acr", "amr"),
    "risk-level-change": ("risk_level",),
    "device-compliance-change": ("device_compliance",),
}


@dataclass(frozen=True)
class Control:
    """An SSF control event for the receiver: verification or stream-updated."""

    action: Action
    payload: dict[str, Any]
    stream_id: str | None


@dataclass
class Plan:
    """What one SET asks for: events to publish, control events, and log-only notes."""

    events: list[RevocationEvent] = field(default_factory=list)
    controls: list[Control] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _schema(build: Callable[[], RevocationEvent]) -> RevocationEvent:
    try:
        return build()
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "event"
        msg = err["msg"].removeprefix("Value error, ")
        raise SetRejected("invalid_request", f"cannot be a revocation: {where}: {msg}") from None


def plan(vset: ValidatedSet) -> Plan:
    """The plan for every event of ``vset``; raises :class:`SetRejected` for bad input."""
    out = Plan()
    config = vset.transmitter
    for uri, payload in vset.events.items():
        known = EVENT_TYPES.get(uri)
        name = short_name(uri)
        if known is None:
            out.notes.append(f"unknown event type {escape(name)}: acknowledged, not applied")
            continue
        action, _ = known
        if action in (Action.VERIFY, Action.STREAM):
            out.controls.append(Control(action, payload, _stream_id(vset.sub_id, payload)))
            continue
        if action is Action.LOG:
            out.notes.append(f"{name}: known, acknowledged, never applied")
            continue
        optional = uri.removeprefix(CAEP)
        if action is Action.OPTIONAL_CLAIMS:
            if optional not in config.apply_optional:
                out.notes.append(f"{name}: not in apply_optional, acknowledged, not applied")
                continue
        elif uri not in config.apply_events:
            out.notes.append(f"{name}: not in apply_events, acknowledged, not applied")
            continue
        ident = find_subject(vset.sub_id, payload)
        if ident is None:
            raise SetRejected("invalid_request", f"{name} names no subject (sub_id)")
        ref = resolve(
            ident,
            config,
            opaque_is_session=action is Action.SESSION
            and config.opaque_session_revoked == "session",
            sid=payload.get("sid"),
        )
        event = _map(action, name, optional, payload, ref, vset)
        if event is None:
            out.notes.append(f"{name}: nothing to revoke ({_why(action, payload)})")
        else:
            out.events.append(event)
    return out


def _why(action: Action, payload: dict[str, Any]) -> str:
    if action is Action.CREDENTIAL:
        return "a credential was created"
    return f"current_status {escape(payload.get('current_status'), 32)}"


def _map(
    action: Action,
    name: str,
    optional: str,
    payload: dict[str, Any],
    ref: SubjectRef,
    vset: ValidatedSet,
) -> RevocationEvent | None:
    config = vset.transmitter
    received = vset.received_at
    common: dict[str, Any] = {
        "subject": _schema_subject(ref, config),
        "source": _source(vset),
        "expires_at": received + config.max_credential_lifetime,
        "reason": _reason(name, config, payload),
    }
    if ref.token is not None:
        token = ref.token
        return _schema(lambda: TokenRevoked(jti=token, **common))
    if action is Action.SESSION:
        if ref.session is not None:
            session = ref.session
            return _schema(lambda: SessionRevoked(session_id=session, **common))
        return _offboard(name, ref, common, received)
    if action is Action.OFFBOARD:
        if ref.user is None and ref.session is not None:
            session = ref.session
            return _schema(lambda: SessionRevoked(session_id=session, **common))
        return _offboard(name, ref, common, received)
    if action is Action.CREDENTIAL:
        change = payload.get("change_type")
        if change not in ("create", "revoke", "update", "delete"):
            raise SetRejected(
                "invalid_request", f"{name}: change_type must be create/revoke/update/delete"
            )
        if change == "create":
            return None
        client = ref.application or ref.user
        if client is None:
            raise SetRejected("invalid_request", f"{name} names no user or application")
        if (
            ref.application is None
            and config.subject_kind is SubjectKind.HUMAN
            and config.credential_change_offboards_users
        ):
            return _offboard(name, ref, common, received)
        return _schema(
            lambda: CredentialRotated(
                credential_id=client,
                credential_kind=CredentialKind.CLIENT,
                not_before=received,
                **common,
            )
        )
    # token claims change, or an optional type the configuration applies
    if action is Action.OPTIONAL_CLAIMS:
        if optional == "device-compliance-change" and payload.get("current_status") != (
            "not-compliant"
        ):
            return None
        names = _OPTIONAL_CLAIMS[optional]
    else:
        claims = payload.get("claims")
        if not isinstance(claims, dict) or not 1 <= len(claims) <= MAX_CLAIM_NAMES:
            raise SetRejected(
                "invalid_request", f"{name}: claims must be an object of 1..{MAX_CLAIM_NAMES}"
            )
        names = tuple(sorted(str(k) for k in claims))
    if ref.user is None:
        raise SetRejected("invalid_request", f"{name} names no user this receiver maps")
    return _schema(lambda: ClaimsChanged(changed_at=received, claims=names, **common))


def _offboard(name: str, ref: SubjectRef, common: dict[str, Any], received: Any) -> RevocationEvent:
    if ref.user is None:
        ignored = f" (only {', '.join(ref.ignored)})" if ref.ignored else ""
        raise SetRejected(
            "invalid_request",
            f"{name}: the subject ({ref.format}) names no user or session this receiver "
            f"maps{ignored}",
        )
    return _schema(lambda: SubjectOffboarded(not_before=received, **common))


def _schema_subject(ref: SubjectRef, config: TransmitterConfig) -> Any:
    # Sessions and tokens are matched by id alone; without a named user the subject only
    # keys the event (partition, order), so the transmitter stands in for it.
    subject_id = ref.user or f"ssf:{config.name}"
    try:
        tenant = ref.tenant if config.tenant_scoped else None
        return Subject(id=subject_id, kind=config.subject_kind, tenant=tenant)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise SetRejected("invalid_request", f"subject {err['loc'][0]}: {err['msg']}") from None


def _source(vset: ValidatedSet) -> Source:
    return Source(
        channel="ssf",
        origin=vset.transmitter.issuer,
        ref=vset.jti,
        txn=vset.txn,
        toe=vset.toe,
        received_at=vset.received_at,
    )


def _reason(name: str, config: TransmitterConfig, payload: dict[str, Any]) -> str:
    reason = f"SSF {name} from {config.name}"
    admin = payload.get("reason_admin")
    text = admin.get("en") if isinstance(admin, dict) else payload.get("reason")
    if isinstance(text, str) and text:
        reason += f": {escape(text, 300)}"
    return reason[:512]


def _stream_id(sub_id: Any, payload: dict[str, Any]) -> str | None:
    subject = sub_id if sub_id is not None else payload.get("subject")
    if isinstance(subject, dict) and subject.get("format") == "opaque":
        value = subject.get("id")
        if isinstance(value, str) and 0 < len(value) <= 256:
            return value
    return None
