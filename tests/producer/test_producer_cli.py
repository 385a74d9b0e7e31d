"""The ``revocast`` command line without a broker: keys, arguments, configuration, errors."""

from __future__ import annotations

import json
import shutil
import stat
import sys
import time
from pathlib import Path

import pytest
from producer_testkit import cli_env, run_cli

from revocast.cli import main
from schemas import KeySet, SigningKey, UnknownKeyError

TOKEN = "cli-token-0123456789abcdef"


def test_keys_generate_and_rotate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jwks = tmp_path / "public.jwks.json"
    assert (
        main(
            [
                "keys",
                "generate",
                "--kid",
                "2026-10",
                "--out",
                str(tmp_path / "old.jwk.json"),
                "--jwks",
                str(jwks),
            ]
        )
        == 0
    )
    old = SigningKey.from_file(tmp_path / "old.jwk.json")
    assert old.kid == "2026-10"
    assert stat.S_IMODE((tmp_path / "old.jwk.json").stat().st_mode) == 0o600
    assert "d" not in json.loads(jwks.read_text())["keys"][0]  # public half only
    only_old = KeySet.from_file(jwks)

    # Rotation: the new public key joins the JWKS next to the old one.
    assert (
        main(
            [
                "keys",
                "generate",
                "--kid",
                "2026-11",
                "--out",
                str(tmp_path / "new.jwk.json"),
                "--add-to",
                str(jwks),
            ]
        )
        == 0
    )
    new = SigningKey.from_file(tmp_path / "new.jwk.json")
    both = KeySet.from_file(jwks)
    assert both.kids == ["2026-10", "2026-11"]
    assert both.verify(old.sign(b"{}")) == b"{}"
    assert both.verify(new.sign(b"{}")) == b"{}"
    with pytest.raises(UnknownKeyError):
        only_old.verify(new.sign(b"{}"))
    out = capsys.readouterr().out
    assert "trusts 2026-10, 2026-11" in out


def test_keys_generate_refuses_to_clobber(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "k.jwk.json"
    jwks = tmp_path / "p.jwks.json"
    assert main(["keys", "generate", "--kid", "a", "--out", str(out), "--jwks", str(jwks)]) == 0
    before = out.read_text()
    capsys.readouterr()
    assert main(["keys", "generate", "--kid", "b", "--out", str(out)]) == 1
    assert out.read_text() == before
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (
        main(
            [
                "keys",
                "generate",
                "--kid",
                "a",
                "--out",
                str(tmp_path / "c.json"),
                "--add-to",
                str(jwks),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("revocast: error:")
    assert "already has a key with kid 'a'" in err
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["revoke"],
        ["revoke", "session", "--subject", "u"],  # --session-id missing
        ["revoke", "token", "--subject", "u", "--jti", "j", "--kind", "robot"],
        ["revoke", "subject", "--subject", "u", "--not-before", "2026-01-01T00:00:00"],
        ["revoke", "token", "--subject", "u", "--jti", "j", "--expires-in", "forever"],
        ["revoke", "token", "--subject", "u", "--jti", "j", "--wait", ","],
        ["status", "not-a-uuid"],
        ["heartbeat", "--interval", "-1"],
        ["topics", "ensure", "--partitions", "0"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_exit_2_with_one_error_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("revocast")
    assert "error:" in err[-1]


def test_print_config_redacts_secrets(tmp_path: Path) -> None:
    tokens = json.dumps([{"name": "iam", "token": TOKEN, "scopes": ["revoke:*"]}])
    env = cli_env(
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
        REVOCAST_API_TOKENS=tokens,
        REVOCAST_TOPIC_PREFIX="blue",
    )
    done = run_cli("print-config", "--json", env=env)
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    assert config["bootstrap_servers"] == "127.0.0.1:1"
    assert config["topic_prefix"] == "blue"
    assert config["api_tokens"] == [{"name": "iam", "token": "***", "scopes": ["revoke:*"]}]
    text = run_cli("print-config", env=env)
    assert text.returncode == 0
    assert TOKEN not in text.stdout + done.stdout
    assert "$REVOCAST_DELIVERY_TIMEOUT" in text.stdout


def test_config_error_is_one_line_without_traceback() -> None:
    env = cli_env(REVOCAST_DELIVERY_TIMEOUT="soon")
    done = run_cli("print-config", env=env)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "revocast: error: REVOCAST_DELIVERY_TIMEOUT: Input should be a valid number, "
        "unable to parse string as a number"
    )


def test_revoke_without_signing_key_says_how_to_get_one() -> None:
    done = run_cli(
        "revoke",
        "session",
        "--subject",
        "u",
        "--session-id",
        "s",
        env=cli_env(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1"),
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "REVOCAST_SIGNING_KEY_FILE" in done.stderr
    assert "keys generate" in done.stderr


def test_unreachable_broker_fails_fast_and_clearly(key_file: Path) -> None:
    env = cli_env(
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
        REVOCAST_SIGNING_KEY_FILE=str(key_file),
        REVOCAST_CONNECT_TIMEOUT="2",
    )
    began = time.monotonic()
    done = run_cli("revoke", "token", "--subject", "u", "--jti", "j", env=env)
    took = time.monotonic() - began
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "revocast: error: Kafka at 127.0.0.1:1 did not answer within 2 s (connection refused)"
    ]
    assert took < 30  # bounded (2 s connect timeout + interpreter start), never a hang


def test_console_script_is_installed() -> None:
    script = shutil.which("revocast", path=str(Path(sys.executable).parent))
    assert script is not None, "the revocast console script is not installed in this venv"
