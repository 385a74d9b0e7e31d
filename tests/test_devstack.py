"""The local stack launcher's failure messages: no broker, no Redis, no Docker needed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from devstack import DevstackError, KafkaBroker, RedisServer, ensure_kafka_jars, resolve_services
from devstack.cli import main


def _closed_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_taken_kafka_port_is_named() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        broker = KafkaBroker(port=port)
        with pytest.raises(DevstackError, match=rf"port {port} on 127\.0\.0\.1 is taken"):
            broker.start()
    assert broker.workdir is None, "nothing is written before the port check"


def test_taken_redis_port_is_named() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(DevstackError, match=rf"port {port} .*REVOCAST_REDIS_PORT"):
            RedisServer(port=port).start()


def test_missing_java_says_install_openjdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    broker = KafkaBroker()
    with pytest.raises(DevstackError, match="java not found on PATH: install OpenJDK 17"):
        broker.start()
    assert not broker.running


def test_missing_redis_server_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DevstackError, match=r"redis-server not found: run `apt-get install"):
        RedisServer().start()


def test_missing_maven_with_empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVOCAST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DevstackError, match="mvn not found on PATH"):
        ensure_kafka_jars()


def test_unreachable_bootstrap_servers_fail_with_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    port = _closed_loopback_port()
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    with (
        pytest.raises(
            DevstackError,
            match=rf"KAFKA_BOOTSTRAP_SERVERS=127\.0\.0\.1:{port} did not answer within 10 s: "
            "start that broker or unset the variable",
        ),
        resolve_services(),
    ):
        pytest.fail("resolve_services yielded without a broker")


def test_bad_port_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("REVOCAST_TESTCONTAINERS", "0")
    monkeypatch.setenv("REVOCAST_KAFKA_PORT", "ninety")
    with (
        pytest.raises(DevstackError, match="REVOCAST_KAFKA_PORT='ninety' is not a port number"),
        resolve_services(),
    ):
        pytest.fail("resolve_services yielded with a bad port")


def test_cli_reports_errors_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("devstack: error: nothing to run")
    assert err.count("\n") == 1
    assert "Traceback" not in err
