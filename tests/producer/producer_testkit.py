"""Helpers for the producer's tests: the CLI as a subprocess, raw Kafka access, a real uvicorn."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from starlette.applications import Starlette

from schemas import Receipt, TopicNames

REPO = Path(__file__).resolve().parents[2]


def prefix_of(topics: TopicNames) -> str:
    """The REVOCAST_TOPIC_PREFIX that names ``topics`` (as the ``topics`` fixture made them)."""
    return topics.events.removesuffix(".revocast.events")


def cli_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("REVOCAST_") and k != "KAFKA_BOOTSTRAP_SERVERS"
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``python -m revocast.cli ARGS`` in a subprocess, as an operator would run it."""
    return subprocess.run(
        [sys.executable, "-m", "revocast.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def read_records(bootstrap: str, topic: str, count: int, timeout: float = 15.0) -> list[Any]:
    """The first ``count`` records of every partition of ``topic`` (raw kafka-python records)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
        consumer.seek_to_beginning()
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                out.extend(records)
        return out
    finally:
        consumer.close()


def produce_raw(bootstrap: str, topic: str, values: list[tuple[bytes | None, bytes]]) -> None:
    """Write raw (key, value) records, bypassing the publisher (forged events, receipts)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, value in values:
            producer.send(topic, key=key, value=value).get(timeout=10)
    finally:
        producer.close(timeout=5)


def produce_receipts(bootstrap: str, topic: str, receipts: list[Receipt]) -> None:
    produce_raw(bootstrap, topic, [(r.event_id.bytes, r.to_bytes()) for r in receipts])


class ApiServer:
    """A real uvicorn serving ``app`` on 127.0.0.1 in a thread (lifespan included)."""

    def __init__(self, app: Starlette) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(15)
        with contextlib.suppress(OSError):
            self._sock.close()
