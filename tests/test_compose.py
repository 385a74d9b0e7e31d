"""docker-compose.yml, checked without a Docker engine: against the Compose Specification's
JSON Schema, the ``revocast`` command line it calls, the launcher's broker settings, the
producer's retention, and the users and files the services share."""

from __future__ import annotations

import json
import re
import shlex
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft201909Validator

from consumers.settings import ConsumerSettings
from devstack.broker import KafkaBroker
from producer.settings import ProducerSettings, parse_duration
from revocast.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (REPO / "Dockerfile").read_text()
ONE_SHOT = ("keys", "topics")
REVOCAST = sorted(name for name, svc in SERVICES.items() if svc.get("build") == ".")
LONG_RUNNING = [name for name in REVOCAST if name not in ONE_SHOT]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment must be a mapping"
    return {k: str(v) for k, v in env.items()}


def _argv(name: str) -> list[str]:
    """The revocast arguments a service runs (its own, or inside the keys init's shell)."""
    service = SERVICES[name]
    command = service["command"]
    if service.get("entrypoint") == ["sh", "-c"]:
        (script,) = command
        words = shlex.split(script)
        return words[words.index("revocast") + 1 :]
    return list(command)


def test_valid_against_the_compose_specification_schema() -> None:
    schema = json.loads((REPO / "tests/data/compose-spec.json").read_text())
    Draft201909Validator.check_schema(schema)
    errors = sorted(Draft201909Validator(schema).iter_errors(COMPOSE), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


@pytest.mark.parametrize("name", REVOCAST)
def test_every_command_and_flag_exists_in_the_cli(name: str) -> None:
    parser = build_parser()
    try:
        args = parser.parse_args(_argv(name))
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"{name}: revocast {' '.join(_argv(name))} is refused ({exc.code})")
    assert callable(args.handler)


def test_the_image_runs_revocast_as_an_unprivileged_user_owning_the_keys() -> None:
    assert re.search(r"^ENTRYPOINT \[\"revocast\"\]$", DOCKERFILE, re.M)
    user = re.findall(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert user == ["revocast"]
    assert "useradd --system --uid 10001" in DOCKERFILE
    assert "chown revocast:revocast /keys" in DOCKERFILE
    # No service overrides the user: the one that writes the 0600 private key is the one
    # that reads it.
    assert all("user" not in SERVICES[name] for name in REVOCAST)
    keys = SERVICES["keys"]
    assert keys["volumes"] == ["keys:/keys"]
    args = build_parser().parse_args(_argv("keys"))
    assert str(args.out) == "/keys/private.jwk.json"
    assert str(args.jwks) == "/keys/public.jwks.json"
    assert "test -f /keys/private.jwk.json ||" in keys["command"][0]  # never overwrites
    for name in LONG_RUNNING:
        assert "keys:/keys:ro" in SERVICES[name]["volumes"], name
        env = _env(SERVICES[name])
        assert env["REVOCAST_SIGNING_KEY_FILE"] == str(args.out)
        assert env["REVOCAST_JWKS"] == str(args.jwks)
    assert "keys" in COMPOSE["volumes"]


def test_services_wait_for_keys_topics_and_a_healthy_broker_and_restart() -> None:
    for name in LONG_RUNNING:
        depends = SERVICES[name]["depends_on"]
        assert depends["kafka"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["keys"]["condition"] == "service_completed_successfully", name
        assert depends["topics"]["condition"] == "service_completed_successfully", name
        assert SERVICES[name]["restart"] == "unless-stopped", name
    assert SERVICES["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ONE_SHOT:
        assert SERVICES[name]["restart"] == "no", name
    for name in ("kafka", "redis"):
        assert "healthcheck" in SERVICES[name], name


def test_topics_retention_is_the_producers() -> None:
    args = build_parser().parse_args(_argv("topics"))
    defaults = ProducerSettings.load(bootstrap_servers="kafka:19092")
    lifetime = parse_duration(args.max_credential_lifetime)
    margin = parse_duration(args.margin)
    assert lifetime == defaults.max_credential_lifetime
    assert margin == defaults.retention_margin
    assert lifetime + margin == defaults.events_retention == timedelta(hours=25)
    assert args.alter_retention  # a volume kept from an older, shorter setup is raised


def test_broker_settings_are_the_launchers(tmp_path: Path) -> None:
    broker = KafkaBroker(port=1, controller_port=2)
    props_text = broker._server_properties(tmp_path)
    props = dict(line.split("=", 1) for line in props_text.splitlines() if line and line[0] != "#")
    env = _env(SERVICES["kafka"])
    compose = {
        k.removeprefix("KAFKA_").lower().replace("_", "."): v
        for k, v in env.items()
        if k.startswith("KAFKA_") and k not in ("KAFKA_NODE_ID", "KAFKA_HEAP_OPTS")
    }
    for key in (
        "log.retention.hours",
        "log.retention.bytes",
        "log.segment.bytes",
        "num.partitions",
        "default.replication.factor",
        "min.insync.replicas",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "group.initial.rebalance.delay.ms",
        "unclean.leader.election.enable",
    ):
        assert compose[key] == props[key], key
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{broker.version}"


def test_every_revocast_variable_is_a_setting_and_the_api_has_tokens() -> None:
    known = {env for _, env, _ in ProducerSettings.describe()}
    known |= {ConsumerSettings.env_name(name) for name in ConsumerSettings.model_fields}
    known |= {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL"}
    for name in REVOCAST:
        for var in _env(SERVICES[name]):
            assert var in known, f"{name}: {var} is not a revocast setting"
    api = _env(SERVICES["api"])
    assert api["REVOCAST_API_TOKENS"] == "${REVOCAST_API_TOKENS:-}"  # serve-api refuses none
    for name in LONG_RUNNING:
        assert _env(SERVICES[name])["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092", name
    assert _env(SERVICES["topics"])["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"


def test_ports_are_published_on_loopback_only() -> None:
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"
