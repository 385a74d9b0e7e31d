"""The SSF receiver's settings: one :class:`TransmitterConfig` per transmitter, plus limits.

Read once by an entry point (``revocast serve-api``, ``revocast ssf ...``) with
:meth:`SsfSettings.load`; library code takes the objects as arguments.

* ``REVOCAST_SSF_TRANSMITTERS``: a JSON array of transmitter objects (fields of
  :class:`TransmitterConfig`), and/or ``REVOCAST_SSF_TRANSMITTERS_FILE`` naming a JSON file
  holding one. Names and issuers must be unique.
* Secrets (``push_token``, ``management_token``) are :class:`~pydantic.SecretStr`: never in
  ``repr``, logs or :meth:`SsfSettings.redacted`.
* Every bound from outside is a setting with a default: SET size, ``iat`` window, JWKS size
  and fetch timeout, poll batch size and backoff.

A bad value fails at load time with a :class:`~schemas.ConfigError` naming the variable and,
for a transmitter, its name and field.

    SsfSettings.load()                 # from the environment
    SsfSettings(transmitters=[TransmitterConfig(name="okta", issuer="https://x.okta.com",
                                                audience=["https://rc.example/ssf"], ...)])
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from producer.ingress.ssf.vocabulary import CAEP, EVENT_TYPES, OPTIONAL_TYPES, RISC, Action
from producer.settings import parse_duration
from schemas import ConfigError, SubjectKind

__all__ = ["SsfSettings", "TransmitterConfig", "resolve_event_type"]

_Url = Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^https?://[^\s]+$")]
_Duration = Annotated[timedelta, NoDecode]

#: Event types applied unless a transmitter's ``apply_events`` says otherwise.
DEFAULT_APPLIED = frozenset(
    uri
    for uri, (action, _) in EVENT_TYPES.items()
    if action in (Action.SESSION, Action.CLAIMS, Action.CREDENTIAL, Action.OFFBOARD)
)


def resolve_event_type(name: str) -> str:
    """A full event type URI from a URI or a short name (``session-revoked``,
    ``caep/session-revoked``, ``risc/account-disabled``)."""
    if "://" in name:
        return name
    for label, base in (("caep/", CAEP), ("risc/", RISC)):
        if name.startswith(label) and base + name.removeprefix(label) in EVENT_TYPES:
            return base + name.removeprefix(label)
    matches = [base + name for base in (CAEP, RISC) if base + name in EVENT_TYPES]
    if len(matches) == 1:
        return matches[0]
    raise ValueError(f"unknown event type {name!r}: use a URI or a CAEP/RISC short name")


def _duration(value: Any) -> Any:
    if isinstance(value, str | int | float | timedelta):
        return parse_duration(value)
    return value


class TransmitterConfig(BaseModel):
    """One SSF transmitter this receiver trusts, and how its SETs become revocations."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="Short name: the push URL is /ssf/v1/push/<name>; logs use it.",
    )
    issuer: str = Field(
        min_length=1, max_length=256, description="The transmitter's issuer: every SET's iss."
    )
    audience: list[Annotated[str, Field(min_length=1, max_length=2048)]] = Field(
        min_length=1,
        max_length=16,
        description="aud values that name this receiver; a SET must carry one of them.",
    )
    configuration_url: _Url | None = Field(
        default=None,
        description="Transmitter configuration metadata; default: the issuer's "
        "/.well-known/ssf-configuration (used when neither jwks_url nor jwks is set).",
    )
    jwks_url: _Url | None = Field(default=None, description="The transmitter's JWKS URL.")
    jwks: dict[str, Any] | None = Field(
        default=None, description="An inline JWKS ({'keys': [...]}) instead of a URL."
    )
    delivery: Literal["push", "poll"] = Field(
        default="push", description="push (RFC 8935) or poll (RFC 8936)."
    )
    push_token: SecretStr | None = Field(
        default=None,
        description="Bearer token the transmitter sends with every push (>= 16 characters).",
    )
    management_token: SecretStr | None = Field(
        default=None,
        description="Bearer token this receiver sends to the transmitter's stream management "
        "and poll endpoints.",
    )
    stream_id: str | None = Field(
        default=None, max_length=256, description="The stream at the transmitter, once created."
    )
    poll_url: _Url | None = Field(
        default=None, description="Poll endpoint; default: the stream's delivery.endpoint_url."
    )
    push_endpoint_url: _Url | None = Field(
        default=None,
        description="This receiver's public push URL, registered when creating the stream.",
    )
    enabled: bool = Field(default=True, description="false: every SET gets access_denied.")
    apply_events: frozenset[str] = Field(
        default=DEFAULT_APPLIED,
        description="Event types applied (URIs or short names); others are acknowledged, "
        "logged and never applied.",
    )
    apply_optional: frozenset[str] = Field(
        default=frozenset(),
        description=f"Optional types mapped to ClaimsChanged: any of {sorted(OPTIONAL_TYPES)}.",
    )
    subject_formats: dict[str, str] = Field(
        default_factory=dict,
        description="Per format, the member whose value is the revocast subject id "
        "(default: opaque->id, email->email, iss_sub->sub, ...).",
    )
    subject_kind: SubjectKind = Field(
        default=SubjectKind.HUMAN, description="Kind of every subject from this transmitter."
    )
    subject_prefix: str = Field(
        default="",
        max_length=64,
        description="Prepended to every subject id (when tokens carry e.g. 'okta|<id>').",
    )
    subject_issuers: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="iss values accepted in iss_sub / jwt_id subjects (default: the issuer).",
    )
    lowercase_email: bool = Field(default=True, description="Lower-case email subjects.")
    tenant_scoped: bool = Field(
        default=False,
        description="A complex subject's tenant member scopes the revocation to that tenant "
        "(tokens whose tenant claim equals it). Off by default: a transmitter's tenant id need "
        "not be what tokens carry, and a wrong scope would miss them.",
    )
    opaque_session_revoked: Literal["session", "user"] = Field(
        default="session",
        description="What a simple opaque subject names in session-revoked (CAEP's example: "
        "a session id).",
    )
    credential_change_offboards_users: bool = Field(
        default=False,
        description="credential-change of a human subject: SubjectOffboarded instead of "
        "CredentialRotated.",
    )
    max_credential_lifetime: _Duration = Field(
        default=timedelta(hours=24),
        description="Longest life of a token of this IdP: every event's expires_at.",
    )
    max_set_age: _Duration = Field(
        default=timedelta(hours=24),
        description="SETs whose iat is older are refused; also the jti dedupe TTL.",
    )
    clock_skew: _Duration = Field(
        default=timedelta(minutes=5), description="How far in the future iat may be."
    )

    _dur = field_validator("max_credential_lifetime", "max_set_age", "clock_skew", mode="before")(
        _duration
    )

    @field_validator("push_token", "management_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("apply_events", mode="before")
    @classmethod
    def _event_uris(cls, value: Any) -> Any:
        if isinstance(value, list | tuple | set | frozenset):
            return frozenset(resolve_event_type(str(v)) for v in value)
        return value

    @field_validator("apply_optional", mode="before")
    @classmethod
    def _optional(cls, value: Any) -> Any:
        if isinstance(value, list | tuple | set | frozenset):
            names = {str(v).removeprefix("caep/").removeprefix(CAEP) for v in value}
            unknown = sorted(names - OPTIONAL_TYPES)
            if unknown:
                raise ValueError(f"not optional types: {unknown}; known: {sorted(OPTIONAL_TYPES)}")
            return frozenset(names)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.delivery == "push" and self.push_token is None:
            raise ValueError(
                f"transmitter {self.name!r}: push delivery needs push_token (the bearer token "
                "the transmitter sends; put it in the stream's authorization_header)"
            )
        for name, limit in (
            ("max_credential_lifetime", timedelta(days=366)),
            ("max_set_age", timedelta(days=30)),
            ("clock_skew", timedelta(hours=1)),
        ):
            if getattr(self, name) > limit:
                raise ValueError(f"transmitter {self.name!r}: {name} must be at most {limit}")
        if self.jwks is not None and self.jwks_url is not None:
            raise ValueError(f"transmitter {self.name!r}: set jwks or jwks_url, not both")
        if self.jwks is not None and not isinstance(self.jwks.get("keys"), list):
            raise ValueError(f"transmitter {self.name!r}: jwks must be {{'keys': [...]}}")
        return self

    @property
    def trusted_subject_issuers(self) -> frozenset[str]:
        return frozenset(self.subject_issuers or [self.issuer])

    @property
    def discovery_url(self) -> str:
        """Where the transmitter configuration metadata lives (SSF 1.0 §7.2)."""
        if self.configuration_url is not None:
            return self.configuration_url
        scheme, _, rest = self.issuer.partition("://")
        host, slash, path = rest.partition("/")
        suffix = ("/" + path.rstrip("/")) if slash and path.strip("/") else ""
        return f"{scheme}://{host}/.well-known/ssf-configuration{suffix}"

    def redacted(self) -> dict[str, Any]:
        out = self.model_dump(mode="json")
        for secret in ("push_token", "management_token"):
            if out.get(secret) is not None:
                out[secret] = "***"
        out["apply_events"] = sorted(out["apply_events"])
        out["apply_optional"] = sorted(out["apply_optional"])
        return out


class SsfSettings(BaseSettings):
    """Everything the SSF receiver (push, poll, stream management) reads from outside."""

    model_config = SettingsConfigDict(
        env_prefix="REVOCAST_SSF_",
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
    )

    transmitters: Annotated[list[TransmitterConfig], NoDecode] = Field(
        default_factory=list,
        description="JSON array of transmitters (see TransmitterConfig); secrets redacted "
        "in print-config.",
    )
    transmitters_file: Path | None = Field(
        default=None, description="A JSON file holding more transmitters in the same form."
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("redis_url", "REVOCAST_SSF_REDIS_URL", "REDIS_URL"),
        description="Redis for jti dedupe, pending poll acknowledgements and stream status.",
    )
    key_prefix: str = Field(
        default="revocast:ssf",
        pattern=r"^[A-Za-z0-9:._-]{1,64}$",
        description="Prefix of every Redis key the receiver writes.",
    )
    max_set_bytes: int = Field(
        default=64 * 1024, ge=1024, le=1 << 20, description="Largest SET (push body) accepted."
    )
    http_timeout: float = Field(
        default=5.0, gt=0, le=60, description="Seconds for any request to a transmitter."
    )
    max_document_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=8 << 20,
        description="Largest JWKS / configuration / stream / poll answer read from a transmitter.",
    )
    jwks_min_refresh: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="Seconds between two JWKS refetches triggered by an unknown kid.",
    )
    jwks_max_age: float = Field(
        default=3600.0, gt=0, le=86400, description="Seconds a fetched JWKS is used."
    )
    poll_max_events: int = Field(
        default=100, ge=1, le=1000, description="maxEvents of each poll request."
    )
    poll_return_immediately: bool = Field(
        default=False, description="false: long polling (the transmitter holds the request)."
    )
    poll_timeout: float = Field(
        default=30.0, gt=0, le=600, description="Seconds a (long) poll request may take."
    )
    poll_backoff_min: float = Field(
        default=0.5, gt=0, le=60, description="First wait after a failed poll."
    )
    poll_backoff_max: float = Field(
        default=30.0, gt=0, le=3600, description="Longest wait between failed polls."
    )

    @field_validator("transmitters", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else []
        return value

    @classmethod
    def load(cls, **overrides: Any) -> SsfSettings:
        """Read the environment (``overrides`` win), or raise a :class:`ConfigError`."""
        try:
            settings = cls(**overrides)
            settings.all_transmitters()
            return settings
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None
        except ValueError as exc:  # JSON in the environment
            raise ConfigError(f"REVOCAST_SSF_TRANSMITTERS: {exc}") from None

    def all_transmitters(self) -> list[TransmitterConfig]:
        """``transmitters`` plus those in ``transmitters_file``; names and issuers unique."""
        found = list(self.transmitters)
        if self.transmitters_file is not None:
            try:
                raw = json.loads(self.transmitters_file.read_text())
                if not isinstance(raw, list):
                    raise ValueError("the file must hold a JSON array")
                found.extend(TransmitterConfig.model_validate(item) for item in raw)
            except ValidationError as exc:
                raise ConfigError(
                    f"REVOCAST_SSF_TRANSMITTERS_FILE {self.transmitters_file}: {_describe(exc)}"
                ) from None
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"REVOCAST_SSF_TRANSMITTERS_FILE {self.transmitters_file}: {exc}"
                ) from None
        for attr in ("name", "issuer"):
            values = [getattr(t, attr) for t in found]
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ConfigError(f"SSF transmitters: {attr} defined twice: {dupes}")
        return found

    def transmitter(self, name: str) -> TransmitterConfig:
        for config in self.all_transmitters():
            if config.name == name:
                return config
        raise ConfigError(
            f"no SSF transmitter named {name!r} (REVOCAST_SSF_TRANSMITTERS has "
            f"{[t.name for t in self.all_transmitters()]})"
        )

    def redacted(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", exclude={"transmitters"})
        out["transmitters"] = [t.redacted() for t in self.all_transmitters()]
        return out


def _describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    return f"REVOCAST_SSF_{loc.split('.')[0].upper()}: {loc}: {msg}" if loc else msg
