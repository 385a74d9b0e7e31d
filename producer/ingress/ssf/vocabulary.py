"""The names Shared Signals speaks: event type URIs (CAEP 1.0, RISC 1.0, SSF 1.0) and subject
identifier formats (RFC 9493 and SSF 1.0 §3.4), each with what revocast does with it.

This module is data only; :mod:`producer.ingress.ssf.mapping` acts on it. Every CAEP 1.0 and
RISC 1.0 event type is listed, so "known but not applied" and "unknown" are told apart in
logs and in the README's table.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = [
    "CAEP",
    "EVENT_TYPES",
    "OPTIONAL_TYPES",
    "RISC",
    "SSF",
    "STREAM_UPDATED",
    "SUBJECT_FORMATS",
    "VERIFICATION",
    "Action",
    "short_name",
]

CAEP: Final = "https://schemas.openid.net/secevent/caep/event-type/"
RISC: Final = "https://schemas.openid.net/secevent/risc/event-type/"
SSF: Final = "https://schemas.openid.net/secevent/ssf/event-type/"

VERIFICATION: Final = SSF + "verification"
STREAM_UPDATED: Final = SSF + "stream-updated"


class Action(StrEnum):
    """What the receiver does with an event type (before per-transmitter configuration)."""

    SESSION = "session"
    """CAEP session-revoked: SessionRevoked (SubjectOffboarded when only a user is named)."""
    CLAIMS = "claims"
    """ClaimsChanged for the subject (TokenRevoked for a jwt_id subject)."""
    CREDENTIAL = "credential"
    """CredentialRotated for the application / client named by the subject."""
    OFFBOARD = "offboard"
    """SubjectOffboarded: every token of the subject issued before now is rejected."""
    OPTIONAL_CLAIMS = "optional_claims"
    """ClaimsChanged only where the transmitter's ``apply_optional`` names the type."""
    LOG = "log"
    """Known, acknowledged and logged, never applied (nothing to revoke, or it would
    "un-revoke", which no revocast event does)."""
    VERIFY = "verify"
    """SSF verification: the ``state`` is checked against the one requested."""
    STREAM = "stream"
    """SSF stream-updated: the stream's status is recorded and shown."""


EVENT_TYPES: Final[dict[str, tuple[Action, str]]] = {
    # CAEP 1.0
    CAEP + "session-revoked": (Action.SESSION, "SessionRevoked, or SubjectOffboarded"),
    CAEP + "token-claims-change": (Action.CLAIMS, "ClaimsChanged"),
    CAEP + "credential-change": (
        Action.CREDENTIAL,
        "CredentialRotated (client_id); change_type create: logged only",
    ),
    CAEP + "assurance-level-change": (Action.OPTIONAL_CLAIMS, "ClaimsChanged (acr, amr)"),
    CAEP + "device-compliance-change": (
        Action.OPTIONAL_CLAIMS,
        "ClaimsChanged (device_compliance) when it becomes not-compliant",
    ),
    CAEP + "risk-level-change": (Action.OPTIONAL_CLAIMS, "ClaimsChanged (risk_level)"),
    CAEP + "session-established": (Action.LOG, "logged: a new session revokes nothing"),
    CAEP + "session-presented": (Action.LOG, "logged: a live session revokes nothing"),
    # RISC 1.0
    RISC + "account-disabled": (Action.OFFBOARD, "SubjectOffboarded"),
    RISC + "account-purged": (Action.OFFBOARD, "SubjectOffboarded"),
    RISC + "credential-compromise": (Action.OFFBOARD, "SubjectOffboarded"),
    RISC + "sessions-revoked": (Action.OFFBOARD, "SubjectOffboarded (deprecated type)"),
    RISC + "account-enabled": (Action.LOG, "logged: revocations never un-revoke"),
    RISC + "account-credential-change-required": (
        Action.LOG,
        "logged: a change is required, none happened yet",
    ),
    RISC + "identifier-changed": (Action.LOG, "logged"),
    RISC + "identifier-recycled": (Action.LOG, "logged"),
    RISC + "opt-in": (Action.LOG, "logged"),
    RISC + "opt-out-initiated": (Action.LOG, "logged"),
    RISC + "opt-out-cancelled": (Action.LOG, "logged"),
    RISC + "opt-out-effective": (Action.LOG, "logged"),
    RISC + "recovery-activated": (Action.LOG, "logged"),
    RISC + "recovery-information-changed": (Action.LOG, "logged"),
    # SSF 1.0
    VERIFICATION: (Action.VERIFY, "state checked, stream marked verified"),
    STREAM_UPDATED: (Action.STREAM, "stream status recorded (enabled/paused/disabled)"),
}
"""Every CAEP 1.0, RISC 1.0 and SSF 1.0 event type URI: its action and a one-line summary."""

OPTIONAL_TYPES: Final = frozenset(
    short_uri.removeprefix(CAEP)
    for short_uri, (action, _) in EVENT_TYPES.items()
    if action is Action.OPTIONAL_CLAIMS
)
"""Short names a transmitter's ``apply_optional`` may list."""

SUBJECT_FORMATS: Final[dict[str, tuple[tuple[str, ...], str]]] = {
    # RFC 9493
    "account": (("uri",), "subject: the acct: URI"),
    "email": (("email",), "subject: the address (lower-cased by default)"),
    "iss_sub": (("iss", "sub"), "subject: sub (iss must be a trusted issuer)"),
    "opaque": (("id",), "subject: id (session-revoked: the session id)"),
    "phone_number": (("phone_number",), "subject: the E.164 number"),
    "did": (("url",), "subject: the DID URL"),
    "uri": (("uri",), "subject: the URI"),
    "aliases": (("identifiers",), "the first identifier that maps"),
    # SSF 1.0 §3.4
    "jwt_id": (("iss", "jti"), "TokenRevoked(jti)"),
    "saml_assertion_id": (("issuer", "assertion_id"), "TokenRevoked(assertion_id)"),
    "ip-addresses": (("ip-addresses",), "not a subject: logged, never applied"),
    "complex": ((), "user, session, application, tenant members as above"),
}
"""Every subject identifier format the receiver parses: required members and what it maps to."""


def short_name(event_type: str) -> str:
    """``caep/session-revoked`` for a known URI; the URI itself (bounded) otherwise."""
    for base, label in ((CAEP, "caep/"), (RISC, "risc/"), (SSF, "ssf/")):
        if event_type.startswith(base):
            return label + event_type.removeprefix(base)
    return event_type[:200]
