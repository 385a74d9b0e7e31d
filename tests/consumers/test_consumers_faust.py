"""The faust engine as a process against the real broker: ``revocast consume --engine faust``
(settings, flags, lifecycle lines, watermarks, dead letters) and the older
``python -m consumers.faust_app`` alias (per-event receipts, for readers that predate
watermarks)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient

from consumers import RevocationState
from schemas import Envelope, KeySet, SigningKey, TopicNames, Watermark
from schemas.topics import DLQ_REASON_HEADER, DLQ_SERVICE_HEADER
from tests.consumers.conftest import split_receipts

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ANSI = re.compile(rb"\x1b\[")


def _groups(bootstrap: str, prefix: str) -> list[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return [g["group_id"] for g in admin.list_groups() if g["group_id"].startswith(prefix)]
    finally:
        admin.close()


def _wait_for(path: Path, pattern: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, path.read_text(errors="replace")):
            return True
        time.sleep(0.2)
    return False


def _bad_records(publisher: Any, signing_key: SigningKey, valid: bytes) -> None:
    publisher.send_raw(b"garbage.not.jws")
    publisher.send_raw(valid)  # unsigned
    publisher.send_raw(SigningKey.generate("stranger").sign(valid))


def test_revocast_consume_engine_faust_is_one_way_to_run_it(
    kafka_bootstrap: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    signing_key: SigningKey,
    publisher: Any,
    events: Callable[[int], list[Envelope]],
    read: Callable[..., list[Any]],
    tmp_path: Path,
) -> None:
    instance = f"faust-{uuid.uuid4().hex[:8]}"
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(trusted_keys.to_jwks()))
    instance_key = SigningKey.generate(instance)
    key_file = tmp_path / "instance.jwk"
    key_file.write_text(json.dumps(instance_key.private_jwk()))
    history = [publisher.send(e) for e in events(40)]
    _bad_records(publisher, signing_key, events(1)[0].model_dump_json().encode())
    publisher.heartbeats()
    publisher.flush()
    log = tmp_path / "consume.log"
    # Settings from the environment, as for every engine; the engine from the flag.
    env = {
        **os.environ,
        "REVOCAST_JWKS": str(jwks),
        "REVOCAST_INSTANCE_KEY_FILE": str(key_file),
        "REVOCAST_MAX_STALENESS": "30",
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "revocast", "--bootstrap-servers", kafka_bootstrap,
                "--topic-prefix", topics.events.split(".")[0],
                "consume", "--engine", "faust", "--service", "faust-svc", "--instance", instance,
            ],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            assert _wait_for(log, r"ready in [\d.]+ s: 46 records read, 40 applied, 3 dead", 90), (
                log.read_text()[-3000:]
            )
            live = [publisher.send(e) for e in events(20)]
            publisher.send_raw(signing_key.sign(b'{"v": 1, "event": {"type": "nope"}}'))
            publisher.flush()
            assert _wait_for(log, r"dead-lettered 1 record", 30), log.read_text()[-3000:]
            assert _groups(kafka_bootstrap, f"revocast-faust.faust-svc.{instance}.")
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
    text = log.read_bytes()
    assert code == 0, text[-3000:]
    lines = text.decode().splitlines()
    # The lifecycle lines every engine prints, and nothing of faust's own at INFO.
    assert any("(engine faust)" in line and "connecting to" in line for line in lines)
    assert any("INFO revocast.consume: assigned 3 partitions of" in line for line in lines)
    assert not ANSI.search(text), "terminal control codes in a pipe"
    assert not [line for line in lines if " ERROR " in line], text[-3000:]
    assert not [line for line in lines if re.search(r" (faust|mode|aiokafka)[\w.]*: ", line)]
    stream = history + live
    # Watermarks (signed by the instance key), no per-event receipts.
    records = read(
        kafka_bootstrap,
        topics.receipts,
        lambda rs: any(m.ready and sum(m.offsets.values()) >= 67 for m in split_receipts(rs)[1]),
    )
    receipts, marks = split_receipts(records)
    assert receipts == []
    service_keys = KeySet.of([instance_key])
    verified = [
        Watermark.from_bytes(r.value, service_keys, require_signature=True) for r in records
    ]
    assert {(m.service, m.instance, m.engine) for m in verified} == {
        ("faust-svc", instance, "faust")
    }
    assert max(sum(m.offsets.values()) for m in marks) == len(stream) + 4 + 3  # bad + heartbeats
    dlq = read(kafka_bootstrap, topics.dead_letter, lambda r: len(r) >= 4, timeout=15)
    reasons = Counter(dict(r.headers)[DLQ_REASON_HEADER].decode() for r in dlq)
    assert reasons == Counter(
        {"undecodable": 1, "missing_signature": 1, "unknown_key": 1, "unknown_type": 1}
    )
    assert all(dict(r.headers)[DLQ_SERVICE_HEADER] == f"faust-svc/{instance}".encode() for r in dlq)
    # Its per-run consumer group was deleted on the clean stop.
    assert not _groups(kafka_bootstrap, f"revocast-faust.faust-svc.{instance}.")


def test_the_older_faust_app_alias_keeps_its_flags_and_per_event_receipts(
    kafka_bootstrap: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    publisher: Any,
    events: Callable[[int], list[Envelope]],
    has_fact: Callable[[RevocationState, Envelope], bool],
    read: Callable[..., list[Any]],
    tmp_path: Path,
) -> None:
    instance = f"faust-{uuid.uuid4().hex[:8]}"
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(trusted_keys.to_jwks()))
    dump = tmp_path / "faust-state.json"
    stream = [publisher.send(e) for e in events(30)]
    publisher.flush()
    stderr = (tmp_path / "faust.stderr").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "consumers.faust_app",
            "--service", "faust-svc", "--instance", instance,
            "--bootstrap", kafka_bootstrap,
            "--topic-prefix", topics.events.split(".")[0],
            "--dump-state", str(dump), "--loglevel", "warning",
        ],
        stdout=subprocess.DEVNULL, stderr=stderr,
        env={**os.environ, "REVOCAST_JWKS": str(jwks)},  # the setting, not a flag
    )  # fmt: skip
    try:
        records = read(kafka_bootstrap, topics.receipts, lambda r: len(r) >= 30, timeout=90)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        stderr.close()
    log = (tmp_path / "faust.stderr").read_text()[-3000:]
    assert code == 0, log
    receipts, marks = split_receipts(records)
    assert marks == []
    assert sorted(r.event_id for r in receipts) == sorted(e.event_id for e in stream)
    assert {(r.service, r.instance, r.flavor) for r in receipts} == {
        ("faust-svc", instance, "faust")
    }
    state = RevocationState.from_snapshot(json.loads(dump.read_text()))
    assert all(has_fact(state, e) for e in stream)
