"""The producer's settings: one class, read once by an entry point, passed down explicitly.

Every field has an environment name (``REVOCAST_<FIELD>``; the broker address also
answers to the conventional ``KAFKA_BOOTSTRAP_SERVERS``), a default and a
description. Library code (publisher, tracker, heartbeat, API) takes what it needs
as arguments; only ``revocast`` and ``python -m producer.api`` call
:meth:`ProducerSettings.load`.

Guarantees:

* A bad value fails at load time with a :class:`~schemas.ConfigError` that names
  the environment variable, never later in the middle of a revocation.
* ``min_insync_replicas <= replication_factor`` and the retention of the events
  topic covers ``max_credential_lifetime + retention_margin``; both are checked
  here and again by :func:`producer.topics.ensure_topics` against the broker.
* Secrets (API tokens) are :class:`~pydantic.SecretStr`: they never appear in
  ``repr``, logs or :meth:`ProducerSettings.redacted`.

    ProducerSettings.load()                                 # from the environment
    ProducerSettings.load(bootstrap_servers="127.0.0.1:9092", delivery_timeout=3)
"""

from __future__ import annotations

import json
import os
import re
import socket
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Self

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

from schemas import ConfigError, KeySet, SigningKey, TopicNames
from schemas.security import KafkaSecurity

__all__ = [
    "REVOKE_SCOPES",
    "SCOPES",
    "STATUS_SCOPE",
    "ApiToken",
    "ProducerSettings",
    "parse_duration",
]

REVOKE_SCOPES: dict[str, str] = {
    "session": "revoke:session",
    "token": "revoke:token",
    "subject": "revoke:subject",
    "claims": "revoke:claims",
    "credential": "revoke:credential",
}
"""The scope each ``POST /v1/revocations/{kind}`` needs (``revoke:*`` grants them all)."""

STATUS_SCOPE = "status:read"
SCOPES = frozenset({*REVOKE_SCOPES.values(), "revoke:*", STATUS_SCOPE})

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str | float | timedelta) -> timedelta:
    """A duration from seconds or a short form: ``90``, ``"90s"``, ``"15m"``, ``"24h"``, ``"7d"``.

    ISO 8601 (``"PT1H"``) is accepted too. Negative or zero durations are rejected.
    """
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int | float):
        result = timedelta(seconds=value)
    else:
        match = _DURATION.match(value)
        if match:
            result = timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2] or "s"])
        else:
            try:
                from pydantic import TypeAdapter

                result = TypeAdapter(timedelta).validate_python(value.strip())
            except ValidationError:
                raise ValueError(
                    f"{value!r} is not a duration (use seconds, or 500ms, 90s, 15m, 24h, 7d, PT1H)"
                ) from None
    if result <= timedelta(0):
        raise ValueError(f"duration must be positive, got {value!r}")
    return result


def _split_list(value: Any) -> Any:
    """``"a,b"`` or a JSON array -> list; other values pass through to pydantic."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class ApiToken(BaseModel):
    """One bearer token of the HTTP API and what it may do.

    ``name`` identifies the caller in logs and audit fields (the token never does).

        ApiToken(name="okta-hook", token="…32+ random chars…", scopes={"revoke:*"})
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
    token: SecretStr = Field(description="The bearer token itself; at least 16 characters.")
    scopes: frozenset[str] = Field(description=f"Any of: {', '.join(sorted(SCOPES))}.")

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("token must be at least 16 characters")
        return value

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: frozenset[str]) -> frozenset[str]:
        unknown = sorted(value - SCOPES)
        if unknown:
            raise ValueError(f"unknown scope(s) {unknown}; known: {sorted(SCOPES)}")
        if not value:
            raise ValueError("a token needs at least one scope")
        return value

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or (scope.startswith("revoke:") and "revoke:*" in self.scopes)


def _default_emitter() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


_Seconds = Annotated[float, Field(gt=0, le=3600)]
_Duration = Annotated[timedelta, NoDecode]


class ProducerSettings(BaseSettings):
    """Everything the publisher, heartbeat, tracker, CLI and HTTP API read from outside."""

    model_config = SettingsConfigDict(
        env_prefix="REVOCAST_",
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        validate_default=True,
    )

    # -- Kafka
    bootstrap_servers: str = Field(
        default="localhost:9092",
        min_length=1,
        validation_alias=AliasChoices(
            "bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS", "REVOCAST_BOOTSTRAP_SERVERS"
        ),
        description="Kafka bootstrap servers, host:port[,host:port...].",
    )
    topic_prefix: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Prefix for the three topic names ('' = revocast.events, "
        "revocast.receipts, revocast.events.dlq).",
    )
    client_id: str = Field(
        default="revocast-producer", min_length=1, description="Kafka client id."
    )
    connect_timeout: _Seconds = Field(
        default=10.0, description="Seconds to reach the broker at start-up before giving up."
    )
    delivery_timeout: _Seconds = Field(
        default=10.0,
        description="Seconds within which an event is acknowledged by the broker (acks=all) "
        "or publish() raises; nothing is reported as published without an acknowledgement.",
    )
    linger_ms: int = Field(
        default=0, ge=0, le=1000, description="Kafka linger.ms: 0 favours latency."
    )
    batch_size: int = Field(
        default=65536, ge=1024, le=16 << 20, description="Kafka batch.size in bytes."
    )
    batch_records: bool = Field(
        default=True,
        description="publish_many packs each partition's events into signed batch records "
        "(false: one record per event, for consumers that predate batch records).",
    )
    kafka_security: KafkaSecurity = Field(
        default_factory=lambda: KafkaSecurity.from_env(os.environ),
        description="SASL/TLS of every Kafka client, from REVOCAST_KAFKA_SECURITY_PROTOCOL, "
        "_SASL_MECHANISM, _SASL_USERNAME, _SASL_PASSWORD, _SSL_CAFILE, _SSL_CERTFILE, "
        "_SSL_KEYFILE, _SSL_KEY_PASSWORD, _SSL_CHECK_HOSTNAME (default PLAINTEXT).",
    )

    # -- signing
    signing_key_file: Path | None = Field(
        default=None,
        description="Private Ed25519 JWK used to sign every event (`revocast keys generate`).",
    )
    issuer: str = Field(
        default="revocast", min_length=1, max_length=256, description="Envelope issuer."
    )

    # -- topics
    partitions: int = Field(default=3, ge=1, le=10000, description="Partitions per topic.")
    replication_factor: int = Field(
        default=1,
        ge=1,
        le=32,
        description="Replication factor (1 on a dev broker, 3 in production).",
    )
    min_insync_replicas: int = Field(
        default=1, ge=1, le=32, description="min.insync.replicas; at most replication_factor."
    )
    default_credential_lifetime: _Duration = Field(
        default=timedelta(hours=1),
        description="How long a revoked credential would have lived when a revocation does not "
        "say (sets expires_at).",
    )
    max_credential_lifetime: _Duration = Field(
        default=timedelta(hours=24),
        description="The longest lifetime of any credential a revocation may guard; the events "
        "topic retains at least this plus retention_margin.",
    )
    retention_margin: _Duration = Field(
        default=timedelta(hours=1), description="Added to max_credential_lifetime for retention."
    )
    receipts_retention: _Duration = Field(
        default=timedelta(hours=24), description="retention.ms of the receipts topic."
    )

    # -- heartbeat
    heartbeat_interval: _Seconds = Field(
        default=1.0, description="Seconds between heartbeats into every events partition."
    )
    heartbeat_emitter: str = Field(
        default_factory=_default_emitter,
        min_length=1,
        max_length=256,
        description="Name of this heartbeat emitter (default host:pid).",
    )

    # -- in force
    expected_services: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Services a revocation must reach to count as in force everywhere "
        "(comma-separated).",
    )
    wait_timeout: _Seconds = Field(
        default=10.0, description="Default seconds to wait for a revocation to be in force."
    )
    status_lookback: _Duration = Field(
        default=timedelta(hours=1),
        description="How far back the API's receipt tracker reads receipts at start.",
    )
    service_jwks: str | None = Field(
        default=None,
        description="JWKS (file or https URL) of the services' watermark keys: when set, only "
        "watermarks that verify count towards 'in force'; unsigned ones and per-event receipts "
        "are refused (counted, logged).",
    )
    fleet_forget_after: _Duration = Field(
        default=timedelta(minutes=10),
        description="An instance silent this long leaves the fleet; until then it is reported "
        "silent and keeps a revocation it had not applied from being in force everywhere.",
    )

    # -- HTTP API
    api_host: str = Field(default="127.0.0.1", description="Address the HTTP API listens on.")
    api_port: int = Field(default=8080, ge=0, le=65535, description="Port of the HTTP API.")
    api_tokens: Annotated[list[ApiToken], NoDecode] = Field(
        default_factory=list,
        description='Bearer tokens of the HTTP API, a JSON list: [{"name": "iam", "token": '
        '"<16+ characters; use 32 random>", "scopes": ["revoke:*", "status:read"]}]; name: 1-64 '
        "of A-Z a-z 0-9 . _ -; scopes: revoke:session|token|subject|claims|credential, "
        "revoke:* (all five), status:read.",
    )
    api_tokens_file: Path | None = Field(
        default=None, description="A JSON file holding more tokens in the same form."
    )

    log_level: str = Field(
        default="INFO",
        pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$",
        description="Python logging level.",
    )

    @field_validator(
        "default_credential_lifetime",
        "max_credential_lifetime",
        "retention_margin",
        "receipts_retention",
        "status_lookback",
        "fleet_forget_after",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str | int | float | timedelta):
            return parse_duration(value)
        return value

    @field_validator("expected_services", mode="before")
    @classmethod
    def _services(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _tokens(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else []
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) must be <= replication_factor "
                f"({self.replication_factor}): no write could ever be acknowledged"
            )
        if self.default_credential_lifetime > self.max_credential_lifetime:
            raise ValueError(
                "default_credential_lifetime must be <= max_credential_lifetime: the topic would "
                "forget revocations before the credentials they revoke expire"
            )
        return self

    # -- loading

    @classmethod
    def load(cls, **overrides: Any) -> ProducerSettings:
        """Read the environment (``overrides`` win), or raise a :class:`ConfigError`."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            err = exc.errors()[0]
            msg = err["msg"].removeprefix("Value error, ")
            if not err["loc"]:
                raise ConfigError(f"invalid producer settings: {msg}") from None
            raise ConfigError(f"{cls.env_name(str(err['loc'][0]))}: {msg}") from None
        except (ValueError, json.JSONDecodeError) as exc:  # settings sources decode JSON
            raise ConfigError(f"invalid producer setting: {exc}") from None

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable that sets ``field`` (the first one, if several)."""
        info = cls.model_fields.get(field)
        if info is not None and isinstance(info.validation_alias, AliasChoices):
            names = [c for c in info.validation_alias.choices if isinstance(c, str)]
            env = [n for n in names if n.isupper()]
            if env:
                return env[0]
        return f"REVOCAST_{field.upper()}"

    # -- derived values

    @property
    def topics(self) -> TopicNames:
        return TopicNames.prefixed(self.topic_prefix) if self.topic_prefix else TopicNames()

    @property
    def events_retention(self) -> timedelta:
        return self.max_credential_lifetime + self.retention_margin

    def service_keys(self) -> KeySet | None:
        """The services' watermark keys (``REVOCAST_SERVICE_JWKS``), or ``None``."""
        if self.service_jwks is None:
            return None
        try:
            return KeySet.load(self.service_jwks)
        except (ConfigError, OSError, ValueError) as exc:
            raise ConfigError(f"REVOCAST_SERVICE_JWKS: {exc}") from None

    def signing_key(self) -> SigningKey:
        """The configured signing key, or a :class:`ConfigError` that says how to get one."""
        if self.signing_key_file is None:
            raise ConfigError(
                "REVOCAST_SIGNING_KEY_FILE is not set: events must be signed; create a key with "
                "`revocast keys generate --kid KID --out private.jwk.json --jwks public.jwks.json`"
            )
        return SigningKey.from_file(self.signing_key_file)

    def tokens(self) -> list[ApiToken]:
        """``api_tokens`` plus those in ``api_tokens_file``; duplicates are a ConfigError."""
        tokens = list(self.api_tokens)
        if self.api_tokens_file is not None:
            try:
                raw = json.loads(self.api_tokens_file.read_text())
                tokens.extend(ApiToken.model_validate(item) for item in raw)
            except (OSError, ValueError, TypeError) as exc:
                detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else exc
                raise ConfigError(
                    f"REVOCAST_API_TOKENS_FILE {self.api_tokens_file}: {detail}"
                ) from None
        seen_names: set[str] = set()
        seen_tokens: set[str] = set()
        for token in tokens:
            secret = token.token.get_secret_value()
            if token.name in seen_names or secret in seen_tokens:
                raise ConfigError(f"API token {token.name!r} is defined twice (name or value)")
            seen_names.add(token.name)
            seen_tokens.add(secret)
        return tokens

    def redacted(self) -> dict[str, Any]:
        """The effective settings as JSON-ready values, secrets replaced by ``"***"``."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "api_tokens":
                value = [
                    {"name": t.name, "token": "***", "scopes": sorted(t.scopes)} for t in value
                ]
            elif isinstance(value, SecretStr):
                value = "***"
            elif isinstance(value, KafkaSecurity):
                value = value.redacted()
            elif isinstance(value, timedelta):
                value = f"{value.total_seconds():g}s"
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """``(field, environment variable, description)`` for every setting."""
        return [
            (name, cls.env_name(name), info.description or "")
            for name, info in cls.model_fields.items()
        ]
