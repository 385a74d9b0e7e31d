"""run_service and ``python -m consumers`` against the real broker and Redis."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from consumers import ConsumerSettings, RedisSnapshotStore
from consumers.redis_store import connect
from consumers.service import run_service
from schemas import Envelope, KeySet, TopicNames
from tests.consumers.conftest import split_receipts

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prefix(topics: TopicNames) -> str:
    return topics.events.split(".")[0]


def test_run_service_applies_receipts_and_stops_cleanly(
    engine: str,
    kafka_bootstrap: str,
    redis_url: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    publisher: Any,
    events: Callable[[int], list[Envelope]],
    read: Callable[..., list[Any]],
    tmp_path: Path,
) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(trusted_keys.to_jwks()))
    settings = ConsumerSettings(
        service="svc-run",
        instance="svc-run-1",
        engine=engine,
        kafka_bootstrap_servers=kafka_bootstrap,
        jwks=str(jwks),
        topic_prefix=_prefix(topics),
        redis_url=redis_url,
        redis_snapshots=True,
        redis_prefix=f"rp-{_prefix(topics)}",
    )
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(run_service(settings, stop=stop)))
    thread.start()
    try:
        sent = [publisher.send(e) for e in events(5)]
        publisher.flush()
        def covered(records: list[Any]) -> bool:
            marks = split_receipts(records)[1]
            return any(sum(m.offsets.values()) == len(sent) and m.ready for m in marks)

        records = read(kafka_bootstrap, topics.receipts, covered, timeout=30)
        marks = split_receipts(records)[1]
        assert covered(records), marks
        assert {(m.service, m.instance, m.engine) for m in marks} == {
            ("svc-run", "svc-run-1", engine)
        }
    finally:
        stop.set()
        thread.join(30)
    assert result == [0]
    # The clean stop saved a snapshot for the next start.
    client = connect(redis_url)
    snapshot = RedisSnapshotStore(client, "svc-run", prefix=f"rp-{_prefix(topics)}").load(
        topics.events
    )
    client.close()
    assert snapshot is not None
    assert sum(snapshot.offsets.values()) == 5


def test_service_module_serves_metrics_and_exits_0_on_sigterm(
    engine: str,
    kafka_bootstrap: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    publisher: Any,
    events: Callable[[int], list[Envelope]],
    read: Callable[..., list[Any]],
    tmp_path: Path,
) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(trusted_keys.to_jwks()))
    port = _free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "REVOCAST_JWKS": str(jwks),
        "REVOCAST_TOPIC_PREFIX": _prefix(topics),
        "REVOCAST_METRICS_PORT": str(port),
        "REVOCAST_LOG_FORMAT": "json",
        "REVOCAST_ENGINE": engine,
    }
    env.pop("REDIS_URL", None)
    log_path = tmp_path / "service.log"
    log_file = log_path.open("wb")  # a file, not a pipe: a full pipe would block the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "consumers", "--service", "svc-mod", "--instance", "m-1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    try:
        sent = [publisher.send(e) for e in events(3)]
        publisher.flush()

        def covered(records: list[Any]) -> bool:
            marks = split_receipts(records)[1]
            return any(sum(m.offsets.values()) == len(sent) and m.ready for m in marks)

        assert covered(read(kafka_bootstrap, topics.receipts, covered, timeout=30))
        body = ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        ready = f'revocast_consumer_ready{{flavor="{engine}",instance="m-1",service="svc-mod"}}'
        assert f"{ready} 1.0" in body
        assert "revocast_consumer_events_applied_total" in body
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
        log_file.close()
        stderr = log_path.read_text()
    assert code == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(line["msg"] == "revocation consumer ready" for line in lines)


def test_run_service_exit_codes(topics: TopicNames, trusted_keys: KeySet, tmp_path: Path) -> None:
    no_keys = ConsumerSettings(service="s", kafka_bootstrap_servers="127.0.0.1:1")
    assert run_service(no_keys) == 2
    missing_file = ConsumerSettings(service="s", jwks=str(tmp_path / "nope.json"))
    assert run_service(missing_file) == 2
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(trusted_keys.to_jwks()))
    with socket.socket() as silent:  # answers TCP, never speaks Kafka
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        down = ConsumerSettings(
            service="s",
            jwks=str(jwks),
            kafka_bootstrap_servers=f"127.0.0.1:{silent.getsockname()[1]}",
            kafka_connect_timeout=1.0,
        )
        assert run_service(down) == 3


def test_service_module_reports_bad_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVOCAST_")}
    env["REVOCAST_MAX_STALENESS"] = "-1"
    proc = subprocess.run(
        [sys.executable, "-m", "consumers", "--service", "x"],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "max_staleness" in proc.stderr
