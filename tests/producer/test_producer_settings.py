"""ProducerSettings and revocation requests: environment names, validation, redaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from producer.requests import parse_request
from producer.settings import ApiToken, ProducerSettings, parse_duration
from schemas import (
    ConfigError,
    KeySet,
    SchemaViolationError,
    SessionRevoked,
    SigningKey,
    SubjectOffboarded,
    TopicNames,
)

TOKEN = "t0k3n-abcdefghijklmnop"


def test_defaults_are_sane_for_a_dev_broker() -> None:
    s = ProducerSettings.load()
    assert s.replication_factor == 1
    assert s.min_insync_replicas == 1
    assert s.heartbeat_interval == 1.0
    assert s.topics == TopicNames()
    assert s.events_retention == s.max_credential_lifetime + s.retention_margin


def test_every_field_has_an_env_name_and_a_description() -> None:
    rows = ProducerSettings.describe()
    assert {name for name, _, _ in rows} == set(ProducerSettings.model_fields)
    for name, env, description in rows:
        assert description, f"{name} has no description"
        assert env.isupper(), env
    envs = dict((name, env) for name, env, _ in rows)
    assert envs["bootstrap_servers"] == "KAFKA_BOOTSTRAP_SERVERS"
    assert envs["delivery_timeout"] == "REVOCAST_DELIVERY_TIMEOUT"


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "10.0.0.1:9092")
    monkeypatch.setenv("REVOCAST_TOPIC_PREFIX", "blue")
    monkeypatch.setenv("REVOCAST_EXPECTED_SERVICES", "api, billing")
    monkeypatch.setenv("REVOCAST_MAX_CREDENTIAL_LIFETIME", "7d")
    monkeypatch.setenv("REVOCAST_DELIVERY_TIMEOUT", "2.5")
    monkeypatch.setenv(
        "REVOCAST_API_TOKENS",
        json.dumps([{"name": "iam", "token": TOKEN, "scopes": ["revoke:*"]}]),
    )
    s = ProducerSettings.load()
    assert s.bootstrap_servers == "10.0.0.1:9092"
    assert s.topics == TopicNames.prefixed("blue")
    assert s.expected_services == ["api", "billing"]
    assert s.max_credential_lifetime == timedelta(days=7)
    assert s.delivery_timeout == 2.5
    assert [t.name for t in s.tokens()] == ["iam"]
    # Keyword overrides win over the environment.
    assert ProducerSettings.load(bootstrap_servers="b:1").bootstrap_servers == "b:1"


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        ("REVOCAST_DELIVERY_TIMEOUT", "0", "REVOCAST_DELIVERY_TIMEOUT"),
        ("REVOCAST_DELIVERY_TIMEOUT", "soon", "REVOCAST_DELIVERY_TIMEOUT"),
        ("REVOCAST_RETENTION_MARGIN", "a while", "REVOCAST_RETENTION_MARGIN"),
        ("REVOCAST_API_TOKENS", "[{", "REVOCAST_API_TOKENS"),
        ("REVOCAST_LOG_LEVEL", "LOUD", "REVOCAST_LOG_LEVEL"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=expected):
        ProducerSettings.load()


def test_min_isr_cannot_exceed_replication_factor() -> None:
    with pytest.raises(ConfigError, match="min_insync_replicas"):
        ProducerSettings.load(min_insync_replicas=2, replication_factor=1)
    assert (
        ProducerSettings.load(min_insync_replicas=2, replication_factor=3).min_insync_replicas == 2
    )


def test_default_lifetime_must_fit_in_retention() -> None:
    with pytest.raises(ConfigError, match="default_credential_lifetime"):
        ProducerSettings.load(
            default_credential_lifetime=timedelta(days=2), max_credential_lifetime=timedelta(days=1)
        )


def test_tokens_are_validated_and_redacted(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 16"):
        ProducerSettings.load(api_tokens=[{"name": "x", "token": "short", "scopes": ["revoke:*"]}])
    with pytest.raises(ConfigError, match="unknown scope"):
        ProducerSettings.load(api_tokens=[{"name": "x", "token": TOKEN, "scopes": ["root"]}])
    extra = tmp_path / "tokens.json"
    extra.write_text(
        json.dumps([{"name": "status", "token": TOKEN + "2", "scopes": ["status:read"]}])
    )
    s = ProducerSettings.load(
        api_tokens=[{"name": "iam", "token": TOKEN, "scopes": ["revoke:session"]}],
        api_tokens_file=extra,
    )
    assert [t.name for t in s.tokens()] == ["iam", "status"]
    shown = json.dumps(s.redacted())
    assert TOKEN not in shown
    assert "***" in shown
    assert TOKEN not in repr(s)
    dup = ProducerSettings.load(
        api_tokens=[{"name": "iam", "token": TOKEN, "scopes": ["revoke:*"]}],
        api_tokens_file=extra.parent / "dup.json",
    )
    (extra.parent / "dup.json").write_text(
        json.dumps([{"name": "other", "token": TOKEN, "scopes": ["revoke:*"]}])
    )
    with pytest.raises(ConfigError, match="defined twice"):
        dup.tokens()


def test_scopes() -> None:
    token = ApiToken(name="iam", token=TOKEN, scopes=frozenset({"revoke:*"}))  # type: ignore[arg-type]
    assert token.allows("revoke:session")
    assert not token.allows("status:read")
    narrow = ApiToken(name="n", token=TOKEN, scopes=frozenset({"revoke:token"}))  # type: ignore[arg-type]
    assert narrow.allows("revoke:token")
    assert not narrow.allows("revoke:session")


def test_signing_key_is_required_and_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="REVOCAST_SIGNING_KEY_FILE"):
        ProducerSettings.load().signing_key()
    with pytest.raises(ConfigError, match="cannot read signing key"):
        ProducerSettings.load(signing_key_file=tmp_path / "missing.json").signing_key()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("24h", 86400),
        ("7d", 604800),
        ("500ms", 0.5),
        ("PT1H", 3600),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "-5", "0", "soon", "5 parsecs"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


# -- requests: the same validation for CLI and API

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SUBJECT = {"id": "u-1", "kind": "human"}


def _event(kind: str, data: dict[str, object]) -> object:
    return parse_request(kind, data).to_event(
        default_lifetime=timedelta(hours=1), max_lifetime=timedelta(hours=24), now=NOW
    )


def test_request_defaults() -> None:
    event = _event("session", {"subject": SUBJECT, "session_id": "s-1"})
    assert isinstance(event, SessionRevoked)
    assert event.expires_at == NOW + timedelta(hours=1)
    offboard = _event("subject", {"subject": SUBJECT, "expires_in": 60})
    assert isinstance(offboard, SubjectOffboarded)
    assert offboard.not_before == NOW
    assert offboard.expires_at == NOW + timedelta(seconds=60)


@pytest.mark.parametrize(
    ("kind", "data", "field"),
    [
        ("session", {"subject": SUBJECT}, "session_id"),
        ("session", {"subject": {"id": "u", "kind": "robot"}, "session_id": "s"}, "subject.kind"),
        ("token", {"subject": SUBJECT, "jti": "j", "colour": "red"}, "colour"),
        ("credential", {"subject": SUBJECT, "credential_id": "c"}, "credential_kind"),
        ("claims", {"subject": SUBJECT, "changed_at": "2026-01-01T00:00:00"}, "changed_at"),
        (
            "session",
            {"subject": SUBJECT, "session_id": "s", "expires_in": 10 * 86400},
            "expires_in",  # the field the caller gave
        ),
        (
            "session",
            {"subject": SUBJECT, "session_id": "s", "expires_at": "2020-01-01T00:00:00Z"},
            "expires_at",
        ),
        ("nuke", {}, "kind"),
    ],
)
def test_request_errors_name_the_field(kind: str, data: dict[str, object], field: str) -> None:
    with pytest.raises(SchemaViolationError) as info:
        _event(kind, data)
    assert info.value.field == field
    assert str(info.value).startswith(field)


def test_service_jwks_fleet_and_batch_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = ProducerSettings.load()
    assert s.service_keys() is None  # no keys: watermarks are read unverified
    assert s.batch_records is True
    assert s.fleet_forget_after == timedelta(minutes=10)
    key = SigningKey.generate("orders-1")
    jwks = tmp_path / "services.jwks.json"
    jwks.write_text(json.dumps(KeySet.of([key]).to_jwks()))
    monkeypatch.setenv("REVOCAST_SERVICE_JWKS", str(jwks))
    monkeypatch.setenv("REVOCAST_FLEET_FORGET_AFTER", "90s")
    monkeypatch.setenv("REVOCAST_BATCH_RECORDS", "false")
    s = ProducerSettings.load()
    keys = s.service_keys()
    assert keys is not None
    assert keys.kids == ["orders-1"]
    assert s.fleet_forget_after == timedelta(seconds=90)
    assert s.batch_records is False
    monkeypatch.setenv("REVOCAST_SERVICE_JWKS", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="REVOCAST_SERVICE_JWKS"):
        ProducerSettings.load().service_keys()
