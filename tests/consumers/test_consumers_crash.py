"""A consumer killed with SIGKILL mid-stream misses nothing once restarted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from consumers import RevocationState
from schemas import Envelope, KeySet, TopicNames

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

SCRIPT = Path(__file__).with_name("consumer_proc.py")
TOTAL = 300


class Proc:
    def __init__(self, args: list[str], out: Path, instance: str) -> None:
        self.out = out
        self.instance = instance
        self.stderr = (out / f"stderr-{instance}-{uuid.uuid4().hex[:4]}.log").open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, str(SCRIPT), *args, "--instance", instance],
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )

    def applied(self) -> list[str]:
        path = self.out / f"applied-{self.instance}.log"
        return path.read_text().split() if path.exists() else []

    def wait_ready(self, timeout: float) -> None:
        ready = self.out / f"ready-{self.instance}"
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.popen.poll() is not None:
                pytest.fail(f"consumer process exited {self.popen.returncode}: {self.err()}")
            if time.monotonic() > deadline:
                pytest.fail(f"consumer process not ready in {timeout}s: {self.err()}")
            time.sleep(0.05)

    def dump(self) -> dict[str, Any] | None:
        path = self.out / f"state-{self.instance}.json"
        try:
            body: dict[str, Any] = json.loads(path.read_text())
            return body
        except (OSError, ValueError):
            return None

    def err(self) -> str:
        self.stderr.flush()
        return Path(self.stderr.name).read_text()[-2000:]

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)
        self.stderr.close()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.close()


@pytest.mark.parametrize("warm_up", ["replay", "redis-snapshot"])
def test_sigkill_mid_stream_then_restart_misses_nothing(
    warm_up: str,
    kafka_bootstrap: str,
    redis_url: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    publisher: Any,
    events: Callable[[int], list[Envelope]],
    has_fact: Callable[[RevocationState, Envelope], bool],
    tmp_path: Path,
    procs: list[Proc],
) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(trusted_keys.to_jwks()))
    prefix = topics.events.split(".")[0]
    args = ["--bootstrap", kafka_bootstrap, "--prefix", prefix, "--jwks", str(jwks),
            "--out", str(tmp_path)]  # fmt: skip
    if warm_up == "redis-snapshot":
        args += ["--redis", redis_url]

    # Some history before the first start.
    stream = [publisher.send(e) for e in events(50)]
    publisher.flush()
    first = Proc(args, tmp_path, "victim")
    procs.append(first)
    first.wait_ready(30)

    # Publish the rest in the background, and kill the consumer in the middle of it.
    rest = events(TOTAL - 50)
    sent: list[Envelope] = []
    done = threading.Event()

    def publish() -> None:
        for e in rest:
            sent.append(publisher.send(e))
            publisher.flush()
            time.sleep(0.004)
        done.set()

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while len(first.applied()) < 120 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(first.popen.pid, signal.SIGKILL)
    first.popen.wait(10)
    killed_at = len(first.applied())
    assert first.popen.returncode == -signal.SIGKILL
    assert 120 <= killed_at < TOTAL, f"not killed mid-stream ({killed_at} applied)"

    # Restart the same instance while events keep coming.
    second = Proc(args, tmp_path, "victim")
    procs.append(second)
    second.wait_ready(30)
    assert done.wait(30), "publisher did not finish"
    thread.join(5)
    stream += sent
    assert len(stream) == TOTAL

    def complete() -> bool:
        dump = second.dump()
        if dump is None:
            return False
        state = RevocationState.from_snapshot(dump["state"])
        return all(has_fact(state, e) for e in stream)

    deadline = time.monotonic() + 30
    while not complete() and time.monotonic() < deadline:
        time.sleep(0.1)
    second.popen.send_signal(signal.SIGTERM)
    assert second.popen.wait(20) == 0, second.err()
    dump = second.dump()
    assert dump is not None
    state = RevocationState.from_snapshot(dump["state"])
    missing = [str(e.event_id) for e in stream if not has_fact(state, e)]
    assert not missing, f"restarted consumer misses {len(missing)} of {TOTAL} events"
    records = dump["stats"]["records"]
    if warm_up == "replay":
        assert not dump["warmed"]
        assert records >= TOTAL  # replayed the whole history
    else:
        assert dump["warmed"], "did not warm up from the snapshot"
        assert records < TOTAL, "replayed everything despite the snapshot"
