"""Settings of one consumer process, read once by the entry point.

Environment names are ``REVOCAST_<FIELD>`` (e.g. ``REVOCAST_SERVICE``), except
the two every tool in the stack shares: ``KAFKA_BOOTSTRAP_SERVERS`` and
``REDIS_URL`` (the ``REVOCAST_`` spelling works too). Library code never reads
the environment: it takes a :class:`ConsumerSettings` or plain arguments.

    ConsumerSettings(service="orders")              # everything else from env/defaults
    ConsumerSettings(service="orders", jwks="https://iam.example/revocast/jwks.json")
"""

from __future__ import annotations

import os
import socket
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import TopicNames
from schemas.security import KafkaSecurity

__all__ = ["ConsumerSettings"]


def _default_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ConsumerSettings(BaseSettings):
    """Everything ``run_service`` needs. See :meth:`describe` for the effective values."""

    model_config = SettingsConfigDict(
        env_prefix="REVOCAST_",
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
    )

    service: str = Field(
        min_length=1,
        max_length=256,
        description="Name of the service this consumer protects (required; in receipts "
        "and metrics).",
    )
    instance: str = Field(
        default_factory=_default_instance,
        min_length=1,
        max_length=256,
        description="Id of this replica; default '<hostname>-<pid>'.",
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices(
            "kafka_bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS", "REVOCAST_KAFKA_BOOTSTRAP_SERVERS"
        ),
        description="Kafka bootstrap servers, comma-separated host:port.",
    )
    engine: Literal["kafka-python", "confluent", "faust"] = Field(
        default="kafka-python",
        description="Kafka client of the consumer: 'kafka-python' (the reference), "
        "'confluent' (librdkafka; pip install 'revocast[fast]'; far less CPU per event) or "
        "'faust' (a faust-streaming worker, one consumer group per run).",
    )
    instance_key_file: str | None = Field(
        default=None,
        description="This instance's private Ed25519 JWK (revocast keys generate): signs its "
        "watermarks so a tracker trusting the service keys' JWKS cannot be fooled by a "
        "forged one; unset: watermarks are unsigned.",
    )
    kafka_connect_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds to wait for the Kafka cluster to answer at start.",
    )
    kafka_security: KafkaSecurity = Field(
        default_factory=lambda: KafkaSecurity.from_env(os.environ),
        description="SASL/TLS of the Kafka clients, from REVOCAST_KAFKA_SECURITY_PROTOCOL, "
        "_SASL_MECHANISM, _SASL_USERNAME, _SASL_PASSWORD, _SSL_CAFILE, _SSL_CERTFILE, "
        "_SSL_KEYFILE, _SSL_KEY_PASSWORD, _SSL_CHECK_HOSTNAME (default PLAINTEXT).",
    )
    jwks: str | None = Field(
        default=None,
        description="Trusted event-signing keys: a JWKS file path or an http(s) URL. "
        "Required while require_signature is on.",
    )
    require_signature: bool = Field(
        default=True,
        description="Dead-letter unsigned events. Turn off for local development only.",
    )
    topic_prefix: str | None = Field(
        default=None,
        description="Prefix all three topic names (TopicNames.prefixed), for isolated runs.",
    )
    events_topic: str | None = Field(
        default=None, description="Override the events topic name (after any prefix)."
    )
    receipts_topic: str | None = Field(
        default=None, description="Override the receipts topic name (after any prefix)."
    )
    dead_letter_topic: str | None = Field(
        default=None, description="Override the dead-letter topic name (after any prefix)."
    )
    max_staleness: float = Field(
        default=5.0,
        gt=0,
        description="Seconds: privileged checks are denied when any partition's newest "
        "heartbeat/event is older than this.",
    )
    max_credential_lifetime: float = Field(
        default=86_400.0,
        gt=0,
        le=366 * 86_400,
        description="Seconds: no revocation is kept longer than this after it was published "
        "(a longer expires_at is capped, with a warning). Set it to the producer's "
        "REVOCAST_MAX_CREDENTIAL_LIFETIME: the events topic retains that plus a margin, so "
        "restarted and long-running instances hold the same facts.",
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("redis_url", "REDIS_URL", "REVOCAST_REDIS_URL"),
        description="Redis for the shared view and/or snapshots; unset: no Redis.",
    )
    redis_shared_view: bool = Field(
        default=False,
        description="Write every applied event to the service's shared view in Redis.",
    )
    redis_snapshots: bool = Field(
        default=True,
        description="Warm up from, and periodically save, a snapshot in Redis (when "
        "redis_url is set).",
    )
    redis_prefix: str = Field(default="revocast", description="Prefix of every Redis key.")
    snapshot_interval: float = Field(
        default=30.0, gt=0, description="Seconds between snapshots saved to Redis."
    )
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Serve Prometheus metrics on this port (0: any free port); unset: off.",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Address the metrics server binds to."
    )
    tenant_claim: str = Field(
        default="tid",
        min_length=1,
        max_length=64,
        description="Claim holding a token's tenant ('tid', 'tenant', ...): a revocation "
        "about one tenant meets only that tenant's tokens; a token without it meets all.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="'json' for one JSON object per log line."
    )
    log_level: str = Field(default="INFO", description="Python logging level name.")

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value

    def topic_names(self) -> TopicNames:
        base = TopicNames.prefixed(self.topic_prefix) if self.topic_prefix else TopicNames()
        return TopicNames(
            events=self.events_topic or base.events,
            receipts=self.receipts_topic or base.receipts,
            dead_letter=self.dead_letter_topic or base.dead_letter,
        )

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable a field is read from (the first one, if several)."""
        alias = cls.model_fields[field].validation_alias
        if isinstance(alias, AliasChoices):
            return str(alias.choices[1])
        return f"REVOCAST_{field.upper()}"

    def describe(self) -> list[dict[str, Any]]:
        """Rows for a ``print-config`` command: name, env, value, default, description.

        The Redis URL is shown without its password.
        """
        rows = []
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if name == "redis_url" and isinstance(value, str) and "@" in value:
                scheme, _, rest = value.partition("://")
                value = f"{scheme}://***@{rest.rpartition('@')[2]}"
            elif isinstance(value, KafkaSecurity):
                value = value.redacted()
            default = (
                "(required)" if info.is_required() else info.get_default(call_default_factory=False)
            )
            rows.append(
                {
                    "name": name,
                    "env": self.env_name(name),
                    "value": value,
                    "default": {"instance": "<hostname>-<pid>", "kafka_security": "PLAINTEXT"}.get(
                        name, default
                    ),
                    "description": info.description,
                }
            )
        return rows
