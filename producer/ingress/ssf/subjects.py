"""Subject identifiers (RFC 9493, SSF 1.0 §3) → what revocast can revoke.

A SET names its subject in the top-level ``sub_id`` claim (SSF 1.0) or, in transmitters
that predate it, in a ``subject`` member inside the event (both are read; ``sub_id`` wins).
Google's RISC transmitter says ``subject_type`` instead of ``format``; that is read too.

:func:`resolve` turns the identifier into a :class:`SubjectRef` by the transmitter's
configuration:

* ``user``: the revocast subject id (what tokens carry in ``sub``): the identifier's main
  member (opaque ``id``, email ``email``, iss_sub ``sub``, phone_number, account ``uri``,
  uri ``uri``, did ``url``), or the member ``subject_formats`` names, after
  ``subject_prefix``; emails are lower-cased unless configured otherwise. ``iss_sub`` and
  ``jwt_id`` must name a trusted issuer (``subject_issuers``, default the transmitter).
* ``session``: a complex ``session`` member, an event's ``sid``, or (session-revoked only,
  by default) a simple ``opaque`` subject, as in CAEP 1.0's first example;
* ``token``: a ``jwt_id`` (its ``jti``) or ``saml_assertion_id`` (its ``assertion_id``);
* ``application``/``tenant``: complex members of those names; ``device``, ``group``,
  ``org_unit`` and others are recorded in ``ignored`` for the log, never applied.

Every string is bounded (256 printable characters, as revocast ids are), a complex subject
holds at most 16 members, ``aliases`` at most 8 identifiers, and nothing nests deeper. An
unknown format, a missing member or a wrong type raises :class:`SetRejected`
``invalid_request``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from producer.ingress.ssf.exceptions import SetRejected, escape
from producer.ingress.ssf.settings import TransmitterConfig
from producer.ingress.ssf.vocabulary import SUBJECT_FORMATS

__all__ = ["Identifier", "SubjectRef", "find_subject", "parse_identifier", "resolve"]

_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f-\x9f]{1,256}$")
_MEMBER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_COMPLEX_MEMBERS: Final = 16
MAX_ALIASES: Final = 8

#: The member whose value identifies the principal, per format.
MAIN_MEMBER: Final[dict[str, str]] = {
    "account": "uri",
    "email": "email",
    "iss_sub": "sub",
    "opaque": "id",
    "phone_number": "phone_number",
    "did": "url",
    "uri": "uri",
    "jwt_id": "jti",
    "saml_assertion_id": "assertion_id",
}
_USER_FORMATS: Final = frozenset(MAIN_MEMBER) - {"jwt_id", "saml_assertion_id"}


@dataclass(frozen=True)
class Identifier:
    """One parsed subject identifier; ``members`` are its (checked) string members."""

    format: str
    members: dict[str, str]
    aliases: tuple[Identifier, ...] = ()
    complex: dict[str, Identifier] = field(default_factory=dict)

    def describe(self) -> str:
        if self.format == "complex":
            return "complex(" + ",".join(sorted(self.complex)) + ")"
        return self.format


@dataclass(frozen=True)
class SubjectRef:
    """What a subject names, in revocast's terms (``None`` where it names nothing)."""

    format: str
    user: str | None = None
    session: str | None = None
    token: str | None = None
    application: str | None = None
    tenant: str | None = None
    ignored: tuple[str, ...] = ()


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _PRINTABLE.match(value):
        raise SetRejected(
            "invalid_request", f"{where} must be a string of 1..256 printable characters"
        )
    return value


def parse_identifier(value: Any, where: str = "sub_id", *, depth: int = 0) -> Identifier:
    """Parse and bound one subject identifier (simple, ``aliases`` or ``complex``)."""
    if not isinstance(value, dict):
        raise SetRejected("invalid_request", f"{where} must be a JSON object")
    fmt = value.get("format", value.get("subject_type"))
    if not isinstance(fmt, str):
        raise SetRejected("invalid_request", f"{where} has no format")
    if fmt not in SUBJECT_FORMATS:
        raise SetRejected(
            "invalid_request",
            f"{where}: unknown subject format {escape(fmt, 64)!r} (known: "
            f"{', '.join(sorted(SUBJECT_FORMATS))})",
        )
    if fmt == "complex":
        if depth > 0:
            raise SetRejected("invalid_request", f"{where}: a complex subject cannot nest")
        members = {k: v for k, v in value.items() if k not in ("format", "subject_type")}
        if not 1 <= len(members) <= MAX_COMPLEX_MEMBERS:
            raise SetRejected(
                "invalid_request",
                f"{where}: a complex subject needs 1..{MAX_COMPLEX_MEMBERS} members",
            )
        parsed: dict[str, Identifier] = {}
        for name, member in members.items():
            if not _MEMBER_NAME.match(name):
                raise SetRejected("invalid_request", f"{where}: member name is not simple")
            parsed[name] = parse_identifier(member, f"{where}.{name}", depth=depth + 1)
        return Identifier(format=fmt, members={}, complex=parsed)
    if fmt == "aliases":
        items = value.get("identifiers")
        if depth > 0 or not isinstance(items, list) or not 1 <= len(items) <= MAX_ALIASES:
            raise SetRejected(
                "invalid_request", f"{where}: aliases needs 1..{MAX_ALIASES} identifiers"
            )
        aliases = tuple(
            parse_identifier(item, f"{where}.identifiers[{i}]", depth=depth + 1)
            for i, item in enumerate(items)
        )
        if any(a.format in ("aliases", "complex") for a in aliases):
            raise SetRejected("invalid_request", f"{where}: aliases holds simple identifiers")
        return Identifier(format=fmt, members={}, aliases=aliases)
    if fmt == "ip-addresses":
        ips = value.get("ip-addresses")
        if not isinstance(ips, list) or not 1 <= len(ips) <= 16:
            raise SetRejected("invalid_request", f"{where}: ip-addresses needs 1..16 addresses")
        for ip in ips:
            _string(ip, f"{where}.ip-addresses[]")
        return Identifier(format=fmt, members={})
    required, _ = SUBJECT_FORMATS[fmt]
    checked = {name: _string(value.get(name), f"{where}.{name}") for name in required}
    return Identifier(format=fmt, members=checked)


def find_subject(sub_id: Any, payload: dict[str, Any]) -> Identifier | None:
    """The event's subject: top-level ``sub_id`` (SSF 1.0) or the event's ``subject``."""
    if sub_id is not None:
        return parse_identifier(sub_id, "sub_id")
    if "subject" in payload:
        return parse_identifier(payload["subject"], "events.subject")
    return None


def _value(ident: Identifier, config: TransmitterConfig, *, user: bool) -> str:
    member = (config.subject_formats.get(ident.format) if user else None) or MAIN_MEMBER[
        ident.format
    ]
    if member not in ident.members:
        raise SetRejected(
            "invalid_request",
            f"{ident.format} subject has no member {escape(member, 64)!r} to map",
        )
    if ident.format in ("iss_sub", "jwt_id") and (
        ident.members["iss"] not in config.trusted_subject_issuers
    ):
        raise SetRejected(
            "invalid_request",
            f"{ident.format} subject names iss {escape(ident.members['iss'])!r}, not a "
            f"trusted subject issuer of transmitter {config.name}",
        )
    value = ident.members[member]
    if ident.format == "email" and config.lowercase_email:
        value = value.lower()
    return value


def _user(ident: Identifier, config: TransmitterConfig) -> str | None:
    if ident.format in _USER_FORMATS:
        return config.subject_prefix + _value(ident, config, user=True)
    if ident.format == "aliases":
        for alias in ident.aliases:
            if alias.format in _USER_FORMATS and (
                alias.format not in ("iss_sub",)
                or alias.members["iss"] in config.trusted_subject_issuers
            ):
                return config.subject_prefix + _value(alias, config, user=True)
    return None


def resolve(
    ident: Identifier,
    config: TransmitterConfig,
    *,
    opaque_is_session: bool = False,
    sid: Any = None,
) -> SubjectRef:
    """Map a parsed identifier to revocast's terms by the transmitter's configuration."""
    session = _string(sid, "event sid") if sid is not None else None
    if ident.format == "complex":
        parts = ident.complex
        user = _user(parts["user"], config) if "user" in parts else None
        token = None
        if "session" in parts:
            s = parts["session"]
            if s.format in MAIN_MEMBER:
                session = _value(s, config, user=False)
        for name in ("user", "session"):
            if name in parts and parts[name].format in ("jwt_id", "saml_assertion_id"):
                token = _value(parts[name], config, user=False)
        application = tenant = None
        if "application" in parts and parts["application"].format in MAIN_MEMBER:
            application = _value(parts["application"], config, user=False)
        if "tenant" in parts and parts["tenant"].format in MAIN_MEMBER:
            tenant = _value(parts["tenant"], config, user=False)
        ignored = tuple(sorted(set(parts) - {"user", "session", "application", "tenant"}))
        return SubjectRef(
            format=ident.describe(),
            user=user,
            session=session,
            token=token,
            application=application,
            tenant=tenant,
            ignored=ignored,
        )
    if ident.format in ("jwt_id", "saml_assertion_id"):
        return SubjectRef(
            format=ident.format, token=_value(ident, config, user=False), session=session
        )
    if ident.format == "opaque" and opaque_is_session:
        return SubjectRef(format="opaque", session=_value(ident, config, user=False))
    if ident.format == "ip-addresses":
        return SubjectRef(format=ident.format, session=session, ignored=("ip-addresses",))
    return SubjectRef(format=ident.format, user=_user(ident, config), session=session)
