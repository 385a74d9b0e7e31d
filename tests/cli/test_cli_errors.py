"""Every command fails in one line that says what to do, with a non-zero exit code."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from cli_testkit import Cli, error_line

TOKENS = '[{"name": "ops", "token": "0123456789abcdef0123", "scopes": ["revoke:*"]}]'


def test_unresolvable_broker_host_fails_at_once_naming_the_setting(cli: Cli) -> None:
    # A 120 s connect timeout: a command that waited for the name to resolve would hit the
    # subprocess timeout below and fail this test.
    for args in (("topics", "ensure"), ("status", str(uuid.uuid4())), ("heartbeat",)):
        result = cli.run(
            "--bootstrap-servers",
            "no-such-host.invalid:9092",
            *args,
            timeout=60,
            REVOCAST_CONNECT_TIMEOUT="120",
            REVOCAST_SIGNING_KEY_FILE=str(cli.workdir / "absent.jwk"),
        )
        assert result.returncode == 1, result.stderr
        line = error_line(result)
        if args[0] != "heartbeat":
            assert "'no-such-host.invalid' does not resolve" in line
            assert "KAFKA_BOOTSTRAP_SERVERS" in line


@pytest.mark.integration
def test_serve_api_before_topics_ensure_is_one_line_naming_the_command(
    broker_cli: Cli, keys: tuple[Path, Path]
) -> None:
    result = broker_cli.run(
        "serve-api",
        "--port",
        "0",
        REVOCAST_SIGNING_KEY_FILE=str(keys[0]),
        REVOCAST_API_TOKENS=TOKENS,
    )
    assert result.returncode == 1
    line = error_line(result)
    assert "does not exist" in line
    assert "revocast topics ensure" in line
    assert "Traceback" not in result.stderr


def test_serve_api_without_tokens_says_how_to_write_them(cli: Cli, keys: tuple[Path, Path]) -> None:
    result = cli.run("serve-api", REVOCAST_SIGNING_KEY_FILE=str(keys[0]))
    assert result.returncode == 1
    line = error_line(result)
    assert "REVOCAST_API_TOKENS=" in line
    assert '"scopes"' in line
    assert "16" in line


def test_serve_api_without_a_signing_key_says_how_to_make_one(cli: Cli) -> None:
    result = cli.run("serve-api")
    assert result.returncode == 1
    assert "revocast keys generate" in error_line(result)


def test_consume_without_jwks_says_how_to_give_keys(cli: Cli) -> None:
    result = cli.run("--bootstrap-servers", "127.0.0.1:1", "consume", "--service", "orders")
    assert result.returncode == 1
    line = error_line(result)
    assert "--jwks" in line
    assert "REVOCAST_JWKS" in line


def test_bad_log_settings_are_one_line(cli: Cli) -> None:
    result = cli.run("print-config", REVOCAST_LOG_LEVEL="LOUD")
    assert result.returncode == 1
    assert "REVOCAST_LOG_LEVEL" in error_line(result)
    result = cli.run("print-config", REVOCAST_LOG_FORMAT="xml")
    assert result.returncode == 1
    assert "REVOCAST_LOG_FORMAT" in error_line(result)


def test_bad_arguments_exit_2(cli: Cli) -> None:
    result = cli.run("status", "not-a-uuid")
    assert result.returncode == 2
    assert "is not an event id" in result.stderr


@pytest.mark.integration
def test_status_of_an_unknown_event_exits_1(broker_cli: Cli) -> None:
    assert broker_cli.run("topics", "ensure").returncode == 0
    event_id = str(uuid.uuid4())
    result = broker_cli.run("status", event_id, "--timeout", "10")
    assert result.returncode == 1
    line = error_line(result)
    assert f"no service has applied {event_id}" in line
    assert "unknown event id" in line


def test_inspect_of_nothing_running_is_one_line(cli: Cli) -> None:
    result = cli.run("inspect", "--url", "http://127.0.0.1:9", "--subject", "alice")
    assert result.returncode == 1
    assert "cannot reach http://127.0.0.1:9" in error_line(result)
    result = cli.run("inspect", "--url", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert "--subject" in error_line(result)
