"""The faust-streaming worker against the real broker: applies, receipts, dead letters."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient

from consumers import RevocationState
from schemas import Envelope, KeySet, Receipt, SigningKey, TopicNames
from schemas.topics import DLQ_REASON_HEADER, DLQ_SERVICE_HEADER

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_faust_worker_applies_every_event_and_dead_letters_bad_ones(
    kafka_bootstrap: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    signing_key: SigningKey,
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
    history = [publisher.send(e) for e in events(40)]
    valid = events(1)[0].model_dump_json().encode()
    publisher.send_raw(b"garbage.not.jws")
    publisher.send_raw(valid)  # unsigned
    publisher.send_raw(SigningKey.generate("stranger").sign(valid))
    publisher.flush()
    stderr = (tmp_path / "faust.stderr").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "consumers.faust_app",
            "--service", "faust-svc", "--instance", instance,
            "--bootstrap", kafka_bootstrap,
            "--topic-prefix", topics.events.split(".")[0],
            "--jwks", str(jwks), "--dump-state", str(dump),
        ],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )  # fmt: skip
    try:
        # History is replayed by the fresh per-run group; live events follow.
        receipts = read(kafka_bootstrap, topics.receipts, lambda r: len(r) >= 40, timeout=45)
        assert len(receipts) >= 40, (tmp_path / "faust.stderr").read_text()[-3000:]
        live = [publisher.send(e) for e in events(20)]
        publisher.send_raw(signing_key.sign(b'{"v": 1, "event": {"type": "nope"}}'))
        publisher.flush()
        stream = history + live
        receipts = read(kafka_bootstrap, topics.receipts, lambda r: len(r) >= 60, timeout=30)
        dlq = read(kafka_bootstrap, topics.dead_letter, lambda r: len(r) >= 4, timeout=15)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        stderr.close()
    assert code == 0, (tmp_path / "faust.stderr").read_text()[-3000:]
    parsed = [Receipt.from_bytes(r.value) for r in receipts]
    assert {r.event_id for r in parsed} == {e.event_id for e in stream}
    assert len(parsed) == len(stream)
    assert {(r.service, r.instance, r.flavor) for r in parsed} == {("faust-svc", instance, "faust")}
    reasons = Counter(dict(r.headers)[DLQ_REASON_HEADER].decode() for r in dlq)
    assert reasons == Counter(
        {"undecodable": 1, "missing_signature": 1, "unknown_key": 1, "unknown_type": 1}
    )
    assert all(dict(r.headers)[DLQ_SERVICE_HEADER] == f"faust-svc/{instance}".encode() for r in dlq)
    # The worker's in-process state holds every event (dumped on shutdown).
    state = RevocationState.from_snapshot(json.loads(dump.read_text()))
    assert all(has_fact(state, e) for e in stream)
    # Its per-run consumer group was deleted on the clean shutdown.
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        groups = [g["group_id"] for g in admin.list_groups()]
    finally:
        admin.close()
    assert not [g for g in groups if g.startswith(f"revocast-faust.faust-svc.{instance}.")]
