"""Settings of the SCIM service provider: which SCIM clients may call it, and how users map
to the subjects tokens carry.

``REVOCAST_SCIM_CLIENTS`` (JSON) and/or ``REVOCAST_SCIM_CLIENTS_FILE`` (a JSON file in the
same form) list the SCIM clients, one per IdP connection::

    [{"name": "okta-prod", "token": "<32+ random characters>",
      "subject_attribute": "externalId", "subject_kind": "human"},
     {"name": "entra", "token": "<...>", "subject_attribute": "userName",
      "kind_attribute": "userType", "kind_map": {"Agent": "ai_agent"}}]

The SCIM endpoint is mounted only when at least one client is configured.

Guarantees:

* A bad value fails at load time with a :class:`~schemas.ConfigError` naming the
  environment variable (or file) and the client, never at the first request.
* Tokens are :class:`~pydantic.SecretStr`, at least 32 characters, unique across clients;
  :meth:`ScimSettings.redacted` and ``repr`` never show them.
* Every size an outside party controls has a stated bound here (body, page, filter scan).
"""

from __future__ import annotations

import json
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from schemas import ConfigError, SubjectKind

__all__ = ["ScimClient", "ScimSettings", "SubjectAttribute"]

MIN_TOKEN_LENGTH = 32


class SubjectAttribute(StrEnum):
    """The SCIM attribute whose value is the ``sub`` services see in the user's tokens."""

    EXTERNAL_ID = "externalId"
    """The IdP's own id of the user (Okta: the Okta user id ``00u…``; Entra: by default
    ``mailNickname``, often remapped to ``objectId``)."""
    USER_NAME = "userName"
    """The login (Okta: the Okta username; Entra: ``userPrincipalName``)."""
    ID = "id"
    """The id this service provider assigned (only useful when tokens are minted from it)."""
    PRIMARY_EMAIL = "emails"
    """The primary ``emails.value`` (or the only one, when none is marked primary)."""


_Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
_Label = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")]


class ScimClient(BaseModel):
    """One SCIM client (an IdP's provisioning connection) and how its users become subjects.

    ``name`` identifies the client in logs and in each event's ``source.origin``; the token
    never appears anywhere but in the comparison.

        ScimClient(name="okta", token="…32+ random chars…")                  # externalId, human
        ScimClient(name="entra", token="…", subject_attribute="userName",
                   kind_attribute="userType", kind_map={"Agent": "ai_agent"})
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: _Name
    token: SecretStr = Field(
        description=f"The bearer token the IdP sends; at least {MIN_TOKEN_LENGTH} characters."
    )
    subject_attribute: SubjectAttribute = Field(
        default=SubjectAttribute.EXTERNAL_ID,
        description="SCIM attribute that is the tokens' sub: externalId, userName, id, emails.",
    )
    subject_kind: SubjectKind = Field(
        default=SubjectKind.HUMAN,
        description="Kind of every subject of this client (human, service_account, ai_agent), "
        "unless kind_attribute maps a user to another one.",
    )
    kind_attribute: Annotated[str, Field(pattern=r"^(userType|title)$")] | None = Field(
        default=None,
        description="A SCIM User attribute whose value picks the kind through kind_map "
        "(userType or title).",
    )
    kind_map: dict[_Label, SubjectKind] = Field(
        default_factory=dict,
        max_length=64,
        description="kind_attribute value -> kind; values not listed get subject_kind.",
    )
    tenant: _Label | None = Field(
        default=None, description="Tenant set on every subject of this client (optional)."
    )

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if len(secret) < MIN_TOKEN_LENGTH:
            raise ValueError(f"token must be at least {MIN_TOKEN_LENGTH} characters")
        if len(secret) > 1024 or not secret.isprintable() or any(c.isspace() for c in secret):
            raise ValueError("token must be at most 1024 printable characters without spaces")
        return value

    @model_validator(mode="after")
    def _kind_map_needs_attribute(self) -> Self:
        if self.kind_map and self.kind_attribute is None:
            raise ValueError("kind_map is set but kind_attribute is not: name the attribute")
        return self

    def redacted(self) -> dict[str, Any]:
        out = self.model_dump(mode="json")
        out["token"] = "***"  # noqa: S105 - the redaction marker, not a secret
        return out


_CLIENT_LIST = TypeAdapter(list[ScimClient])


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def _identity(client: ScimClient, key: str) -> str:
    return client.name if key == "name" else client.token.get_secret_value()


class ScimSettings(BaseSettings):
    """Everything the SCIM service provider reads from outside (``REVOCAST_SCIM_*``)."""

    model_config = SettingsConfigDict(
        env_prefix="REVOCAST_SCIM_",
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    clients: Annotated[list[ScimClient], NoDecode] = Field(
        default_factory=list,
        description='SCIM clients, JSON: [{"name": "okta", "token": "…", '
        '"subject_attribute": "externalId", "subject_kind": "human"}].',
    )
    clients_file: Path | None = Field(
        default=None, description="A JSON file holding more SCIM clients in the same form."
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        min_length=1,
        description="Redis holding the SCIM users, groups, memberships and versions.",
    )
    key_prefix: str = Field(
        default="revocast:scim",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9:._-]+$",
        description="Prefix of every Redis key the SCIM store writes.",
    )
    redis_timeout: float = Field(
        default=5.0, gt=0, le=60, description="Seconds for one Redis command before 503."
    )
    max_body_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Largest request body accepted; larger ones get 413 while still arriving.",
    )
    default_page_size: int = Field(
        default=100, ge=1, le=1000, description="Resources per page when a search names no count."
    )
    max_page_size: int = Field(
        default=200, ge=1, le=1000, description="Most resources one page returns."
    )
    max_scan: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="Most resources a search that no index narrows may read; more is a 400 "
        "tooMany (userName/externalId/displayName eq and members eq are indexed).",
    )
    max_members: int = Field(
        default=50_000,
        ge=1,
        le=1_000_000,
        description="Most members one group may hold (and most subjects one change may name).",
    )

    @field_validator("clients", mode="before")
    @classmethod
    def _clients(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else []
        return value

    @model_validator(mode="after")
    def _pages(self) -> Self:
        if self.default_page_size > self.max_page_size:
            raise ValueError("default_page_size must be <= max_page_size")
        return self

    @classmethod
    def load(cls, **overrides: Any) -> ScimSettings:
        """Read the environment (``overrides`` win), or raise a :class:`ConfigError`."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            err = exc.errors()[0]
            msg = err["msg"].removeprefix("Value error, ")
            loc = ".".join(str(part) for part in err["loc"])
            if not err["loc"]:
                raise ConfigError(f"invalid SCIM settings: {msg}") from None
            raise ConfigError(
                f"REVOCAST_SCIM_{str(err['loc'][0]).upper()} ({loc}): {msg}"
            ) from None
        except ValueError as exc:  # the settings source decodes JSON
            raise ConfigError(f"invalid SCIM setting: {exc}") from None

    def all_clients(self) -> list[ScimClient]:
        """``clients`` plus those in ``clients_file``; a name or token used twice is an error."""
        clients = list(self.clients)
        if self.clients_file is not None:
            try:
                clients += _CLIENT_LIST.validate_json(self.clients_file.read_bytes())
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(part) for part in err["loc"])
                raise ConfigError(
                    f"REVOCAST_SCIM_CLIENTS_FILE {self.clients_file} ({where}): {err['msg']}"
                ) from None
            except OSError as exc:
                raise ConfigError(f"REVOCAST_SCIM_CLIENTS_FILE: {exc}") from None
        for key in ("name", "token"):
            counts = Counter(_identity(c, key) for c in clients)
            twice = [c.name for c in clients if counts[_identity(c, key)] > 1]
            if twice:
                raise ConfigError(f"SCIM client {twice[0]!r} shares its {key} with another one")
        return clients

    def redacted(self) -> dict[str, Any]:
        """The effective settings as JSON-ready values, tokens replaced by ``"***"``."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "clients":
                value = [client.redacted() for client in value]
            elif name == "redis_url":
                value = _without_password(value)
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """``(field, environment variable, description)`` for every setting."""
        return [
            (name, f"REVOCAST_SCIM_{name.upper()}", info.description or "")
            for name, info in cls.model_fields.items()
        ]
