"""How a revocast client authenticates to Kafka and protects the connection.

:class:`KafkaSecurity` is one pydantic model of the options every client needs
(security protocol, SASL mechanism and credentials, CA, client certificate and key)
and three mappings onto the Kafka client libraries revocast runs on:
:meth:`~KafkaSecurity.to_kafka_python` (the publisher, tracker and reference
consumer), :meth:`~KafkaSecurity.to_confluent` (librdkafka) and
:meth:`~KafkaSecurity.to_aiokafka` (faust). No Kafka library is imported here.

Guarantees:

* Fail closed. A combination that would silently send less protection than the
  settings suggest is refused with a :class:`~schemas.ConfigError` naming the
  setting: SASL credentials with a protocol that ignores them, TLS files with a
  plaintext protocol, a certificate without its key, ``PLAIN`` over a plaintext
  connection (the password would cross the network in the clear).
* Files (CA, certificate, key) must exist when the model is built, so a typo fails
  at start-up rather than at the first reconnect.
* Passwords are :class:`~pydantic.SecretStr`: never in ``repr``, logs or
  :meth:`~KafkaSecurity.redacted`. The mappings hand them to the client only.
* Host names are verified against the broker's certificate unless
  ``ssl_check_hostname`` is turned off explicitly.

    KafkaSecurity()                                        # PLAINTEXT, the dev default
    KafkaSecurity(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                  sasl_username="svc-orders", sasl_password="...", ssl_cafile="ca.pem")
    KafkaSecurity.from_env(os.environ)                     # REVOCAST_KAFKA_* variables
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    model_validator,
)

from schemas.exceptions import ConfigError

__all__ = ["ENV_PREFIX", "KafkaSecurity", "SaslMechanism", "SecurityProtocol"]

ENV_PREFIX = "REVOCAST_KAFKA_"
"""Environment names are ``REVOCAST_KAFKA_<FIELD>``, e.g. ``REVOCAST_KAFKA_SASL_USERNAME``."""

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

# Printable, no whitespace: a principal name ends up in ACLs and log lines.
_Username = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[!-~]+$")]
_Secret = Annotated[SecretStr, Field(min_length=1, max_length=1024)]


class KafkaSecurity(BaseModel):
    """Security options of one Kafka client; see the module docstring."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (production: SASL_SSL).",
    )
    sasl_mechanism: SaslMechanism | None = Field(
        default=None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with SASL_*)."
    )
    sasl_username: _Username | None = Field(
        default=None, description="SASL user: the Kafka principal this client acts as."
    )
    sasl_password: _Secret | None = Field(default=None, description="SASL password.")
    ssl_cafile: FilePath | None = Field(
        default=None,
        description="PEM file of the CA(s) that signed the brokers' certificates "
        "(unset: the system's trust store).",
    )
    ssl_certfile: FilePath | None = Field(
        default=None, description="PEM client certificate (mutual TLS), with ssl_keyfile."
    )
    ssl_keyfile: FilePath | None = Field(
        default=None, description="PEM private key of ssl_certfile."
    )
    ssl_key_password: _Secret | None = Field(
        default=None, description="Password of ssl_keyfile, when it is encrypted."
    )
    ssl_check_hostname: bool = Field(
        default=True,
        description="Verify that the broker's certificate names the host connected to.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        sasl = self.security_protocol.startswith("SASL_")
        tls = self.security_protocol.endswith("SSL")
        if sasl:
            missing = [
                name
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"security_protocol {self.security_protocol} needs {', '.join(missing)}"
                )
            if self.sasl_mechanism == "PLAIN" and not tls:
                raise ValueError(
                    "sasl_mechanism PLAIN over SASL_PLAINTEXT sends the password in the clear: "
                    "use SASL_SSL, or SCRAM-SHA-512"
                )
        else:
            given = [
                name
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is not None
            ]
            if given:
                raise ValueError(
                    f"{', '.join(given)} set but security_protocol {self.security_protocol} "
                    "does not use SASL: use SASL_SSL or drop them"
                )
        if not tls:
            given = [
                name
                for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password")
                if getattr(self, name) is not None
            ]
            if given:
                raise ValueError(
                    f"{', '.join(given)} set but security_protocol {self.security_protocol} "
                    "does not use TLS: use SSL or SASL_SSL, or drop them"
                )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together: set both or neither")
        if self.ssl_key_password is not None and self.ssl_keyfile is None:
            raise ValueError("ssl_key_password set without ssl_keyfile")
        return self

    # -- loading

    @classmethod
    def from_env(cls, environ: Mapping[str, str], prefix: str = ENV_PREFIX) -> KafkaSecurity:
        """Build from ``<prefix><FIELD>`` variables in ``environ``; unset ones keep defaults.

        Raises :class:`~schemas.ConfigError` naming the variable that is wrong.
        """
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = environ.get(prefix + name.upper())
            if raw is not None and raw.strip():
                values[name] = raw.strip()
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            msg = err["msg"].removeprefix("Value error, ")
            where = f"{prefix}{str(err['loc'][0]).upper()}" if err["loc"] else f"{prefix}*"
            raise ConfigError(f"{where}: {msg}") from None

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    def redacted(self) -> dict[str, Any]:
        """JSON-ready values with passwords replaced by ``"***"`` (for print-config)."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "***"
            elif value is not None and not isinstance(value, str | bool):
                value = str(value)
            out[name] = value
        return out

    # -- mappings

    def to_kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's KafkaProducer/KafkaConsumer/KafkaAdminClient."""
        out: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_sasl:
            out["sasl_mechanism"] = self.sasl_mechanism
            out["sasl_plain_username"] = self.sasl_username
            out["sasl_plain_password"] = _reveal(self.sasl_password)
        if self.uses_tls:
            out["ssl_check_hostname"] = self.ssl_check_hostname
            for key, value in (
                ("ssl_cafile", self.ssl_cafile),
                ("ssl_certfile", self.ssl_certfile),
                ("ssl_keyfile", self.ssl_keyfile),
            ):
                if value is not None:
                    out[key] = str(value)
            if self.ssl_key_password is not None:
                out["ssl_password"] = _reveal(self.ssl_key_password)
        return out

    def to_confluent(self) -> dict[str, Any]:
        """librdkafka configuration keys (confluent-kafka's ``Producer``/``Consumer``)."""
        out: dict[str, Any] = {"security.protocol": self.security_protocol.lower()}
        if self.uses_sasl:
            out["sasl.mechanisms"] = self.sasl_mechanism
            out["sasl.username"] = self.sasl_username
            out["sasl.password"] = _reveal(self.sasl_password)
        if self.uses_tls:
            out["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_check_hostname else "none"
            )
            for key, value in (
                ("ssl.ca.location", self.ssl_cafile),
                ("ssl.certificate.location", self.ssl_certfile),
                ("ssl.key.location", self.ssl_keyfile),
            ):
                if value is not None:
                    out[key] = str(value)
            if self.ssl_key_password is not None:
                out["ssl.key.password"] = _reveal(self.ssl_key_password)
        return out

    def to_aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka (and faust's aiokafka transport).

        aiokafka takes TLS as an :class:`ssl.SSLContext`; it is built here from the
        same files, verifying the broker's certificate (and its host name unless
        ``ssl_check_hostname`` is off).
        """
        out: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_sasl:
            out["sasl_mechanism"] = self.sasl_mechanism
            out["sasl_plain_username"] = self.sasl_username
            out["sasl_plain_password"] = _reveal(self.sasl_password)
        if self.uses_tls:
            out["ssl_context"] = self.ssl_context()
        return out

    def ssl_context(self) -> ssl.SSLContext:
        """A client-side TLS context: this CA (or the system's), this client certificate."""
        if not self.uses_tls:
            raise ConfigError(
                f"security_protocol {self.security_protocol} uses no TLS: no SSL context to build"
            )
        context = ssl.create_default_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile is not None else None
        )
        context.check_hostname = self.ssl_check_hostname
        if self.ssl_certfile is not None and self.ssl_keyfile is not None:
            context.load_cert_chain(
                str(self.ssl_certfile),
                str(self.ssl_keyfile),
                password=_reveal(self.ssl_key_password),
            )
        return context


def _reveal(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()
