"""KafkaSecurity: fail-closed validation and the three client mappings (no broker needed)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from consumers.settings import ConsumerSettings
from producer.settings import ProducerSettings
from schemas import ConfigError
from schemas.security import KafkaSecurity


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    from devstack.secure import SecureSetup

    return SecureSetup.generate(tmp_path / "tls", ["orders"]).ca_file


def _scram(ca_file: Path, **extra: object) -> KafkaSecurity:
    return KafkaSecurity.model_validate(
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "svc-orders",
            "sasl_password": "s3cret-s3cret",
            "ssl_cafile": ca_file,
            **extra,
        }
    )


def test_default_is_plaintext_and_maps_to_nothing_secret() -> None:
    sec = KafkaSecurity()
    assert sec.to_kafka_python() == {"security_protocol": "PLAINTEXT"}
    assert sec.to_confluent() == {"security.protocol": "plaintext"}
    assert sec.to_aiokafka() == {"security_protocol": "PLAINTEXT"}


def test_scram_over_tls_maps_to_each_client(ca_file: Path) -> None:
    sec = _scram(ca_file)
    assert sec.to_kafka_python() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc-orders",
        "sasl_plain_password": "s3cret-s3cret",
        "ssl_check_hostname": True,
        "ssl_cafile": str(ca_file),
    }
    assert sec.to_confluent() == {
        "security.protocol": "sasl_ssl",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "svc-orders",
        "sasl.password": "s3cret-s3cret",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(ca_file),
    }
    aio = sec.to_aiokafka()
    context = aio.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert aio == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc-orders",
        "sasl_plain_password": "s3cret-s3cret",
    }


def test_password_never_in_repr_or_redacted(ca_file: Path) -> None:
    sec = _scram(ca_file)
    assert "s3cret" not in repr(sec)
    assert sec.redacted()["sasl_password"] == "***"
    assert "s3cret" not in str(sec.redacted())


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs sasl_mechanism, sasl_username, sasl_password"),
        (
            {"sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "u", "sasl_password": "p"},
            "does not use SASL",
        ),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
                "sasl_password": "p",
            },
            "sends the password in the clear",
        ),
        ({"security_protocol": "TLS"}, "security_protocol"),
        ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"}, "ssl_cafile"),
        ({"security_protocol": "SASL_SSL", "sasl_username": "has space"}, "sasl_username"),
    ],
)
def test_unsafe_or_incomplete_settings_are_refused(values: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KafkaSecurity.model_validate(values)


def test_tls_files_with_plaintext_are_refused(ca_file: Path) -> None:
    with pytest.raises(ValueError, match="does not use TLS"):
        KafkaSecurity.model_validate({"ssl_cafile": ca_file})


def test_certificate_needs_its_key(ca_file: Path) -> None:
    with pytest.raises(ValueError, match="ssl_certfile and ssl_keyfile go together"):
        KafkaSecurity.model_validate({"security_protocol": "SSL", "ssl_certfile": ca_file})


def test_from_env_names_the_variable(ca_file: Path) -> None:
    env = {
        "REVOCAST_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "REVOCAST_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "REVOCAST_KAFKA_SASL_USERNAME": "iam",
        "REVOCAST_KAFKA_SASL_PASSWORD": "pw-pw-pw",
        "REVOCAST_KAFKA_SSL_CAFILE": str(ca_file),
    }
    assert KafkaSecurity.from_env(env).sasl_username == "iam"
    with pytest.raises(ConfigError, match="REVOCAST_KAFKA_SASL_MECHANISM"):
        KafkaSecurity.from_env({**env, "REVOCAST_KAFKA_SASL_MECHANISM": "GSSAPI"})
    with pytest.raises(ConfigError, match=r"REVOCAST_KAFKA_\*: .*needs sasl_password"):
        KafkaSecurity.from_env({k: v for k, v in env.items() if "PASSWORD" not in k})


def test_settings_read_the_security_variables(
    ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVOCAST_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("REVOCAST_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("REVOCAST_KAFKA_SASL_USERNAME", "svc-orders")
    monkeypatch.setenv("REVOCAST_KAFKA_SASL_PASSWORD", "pw-pw-pw")
    monkeypatch.setenv("REVOCAST_KAFKA_SSL_CAFILE", str(ca_file))
    producer = ProducerSettings.load()
    assert producer.kafka_security.sasl_username == "svc-orders"
    assert producer.redacted()["kafka_security"]["sasl_password"] == "***"
    consumer = ConsumerSettings(service="orders")
    assert consumer.kafka_security.to_kafka_python()["security_protocol"] == "SASL_SSL"
    row = next(r for r in consumer.describe() if r["name"] == "kafka_security")
    assert row["value"]["sasl_password"] == "***"
    monkeypatch.setenv("REVOCAST_KAFKA_SSL_CAFILE", "/nonexistent/ca.pem")
    with pytest.raises(ConfigError, match="REVOCAST_KAFKA_SSL_CAFILE"):
        ProducerSettings.load()
