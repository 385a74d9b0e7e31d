"""A broker outage: every producer path fails clearly within a bounded time, claims nothing.

This module starts its OWN KafkaBroker (devstack) and stops it mid-test, so the shared
session broker keeps running for every other test.
"""

from __future__ import annotations

import gc
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from producer_testkit import ApiServer, cli_env, prefix_of, read_records, run_cli

from devstack import KafkaBroker
from producer import (
    BulkPublishError,
    HeartbeatEmitter,
    Published,
    RevocationPublisher,
    ensure_topics,
)
from producer.api import create_app
from producer.settings import ProducerSettings
from schemas import (
    InfrastructureError,
    KeySet,
    SessionRevoked,
    SigningKey,
    Subject,
    TopicNames,
    decode_records,
    in_seconds,
)

pytestmark = [
    pytest.mark.integration,
    # kafka-python 3.0.12 does not close the socket of a refused reconnect attempt
    # (kafka/net/inet.py `connect`); while the broker is down each attempt leaves one
    # for the garbage collector, which warns. Not ours to fix; nothing else is ignored.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

DELIVERY_TIMEOUT = 3.0
BOUND = DELIVERY_TIMEOUT + 4.0  # delivery timeout + 1 s slack + scheduling on a busy machine
TOKEN = "outage-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def collect_leaked_sockets() -> Iterator[None]:
    """Collect kafka-python's leaked sockets while this module's filter still applies."""
    yield
    gc.collect()


def revoke(i: int) -> SessionRevoked:
    return SessionRevoked(
        subject=Subject(id=f"u-{i}", kind="human"), session_id=f"s-{i}", expires_at=in_seconds(600)
    )


def test_broker_outage_fails_fast_claims_nothing_and_recovers(
    private_broker: KafkaBroker, signing_key: SigningKey, trusted_keys: KeySet, key_file: Path
) -> None:
    bootstrap = private_broker.bootstrap
    topics = TopicNames.prefixed(f"o-{uuid.uuid4().hex[:8]}")
    assert ensure_topics(bootstrap, topics).ok
    settings = ProducerSettings.load(
        bootstrap_servers=bootstrap,
        topic_prefix=prefix_of(topics),
        delivery_timeout=DELIVERY_TIMEOUT,
        connect_timeout=DELIVERY_TIMEOUT,
        api_tokens=[{"name": "iam", "token": TOKEN, "scopes": ["revoke:*"]}],
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    claimed: list[Published] = []
    body = {"subject": {"id": "api-user", "kind": "human"}, "session_id": "s-api"}

    with (
        RevocationPublisher.from_settings(settings, signer=signing_key) as pub,
        ApiServer(create_app(settings, signer=signing_key)) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        emitter = HeartbeatEmitter(pub, interval=0.25).start()
        claimed.append(pub.publish(revoke(0)))
        assert http.post("/v1/revocations/session", json=body, headers=auth).status_code == 202
        time.sleep(0.5)
        beats_before = emitter.beats
        assert beats_before >= 1

        private_broker.stop(keep_data=True)

        # publish(): a clear error within the delivery timeout, nothing claimed. Which
        # error depends on whether a heartbeat already noticed the outage: PublishError
        # ("not acknowledged") or BrokerUnavailableError ("did not answer").
        began = time.monotonic()
        with pytest.raises(InfrastructureError) as info:
            claimed.append(pub.publish(revoke(1)))
        assert time.monotonic() - began < BOUND
        message = str(info.value)
        assert "not acknowledged" in message or "did not answer" in message
        assert bootstrap in message
        assert "\n" not in message

        # publish_many(): every event named as not acknowledged.
        began = time.monotonic()
        with pytest.raises(BulkPublishError) as bulk:
            claimed.extend(pub.publish_many([revoke(i) for i in range(2, 7)]))
        assert time.monotonic() - began < BOUND
        assert [f.index for f in bulk.value.failed] == [0, 1, 2, 3, 4]
        assert bulk.value.published == ()

        # The API: 503, published false, within a bounded time.
        began = time.monotonic()
        resp = http.post("/v1/revocations/session", json=body, headers=auth)
        assert time.monotonic() - began < BOUND
        assert resp.status_code == 503
        assert resp.json()["published"] is False
        assert resp.json()["error"] == "broker_unavailable"
        assert resp.headers["retry-after"] == "5"

        # The CLI: one line on stderr, exit 1, bounded.
        env = cli_env(
            KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            REVOCAST_TOPIC_PREFIX=prefix_of(topics),
            REVOCAST_SIGNING_KEY_FILE=str(key_file),
            REVOCAST_CONNECT_TIMEOUT="3",
        )
        began = time.monotonic()
        done = run_cli("revoke", "session", "--subject", "u", "--session-id", "s", env=env)
        assert time.monotonic() - began < 30
        assert done.returncode == 1
        assert done.stderr.strip().splitlines() == [
            f"revocast: error: Kafka at {bootstrap} did not answer within 3 s (connection refused)"
        ]
        assert done.stdout == ""

        # The heartbeat keeps trying and says so; it does not die.
        deadline = time.monotonic() + BOUND + 2
        while emitter.failures == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert emitter.failures >= 1
        assert emitter.last_error is not None

        # The broker comes back on the same port: the same publisher and API recover.
        private_broker.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                claimed.append(pub.publish(revoke(100)))
                break
            except InfrastructureError:
                assert time.monotonic() < deadline, "publisher did not recover"
        recovered = http.post("/v1/revocations/session", json=body, headers=auth)
        assert recovered.status_code == 202, recovered.text
        beats_after = emitter.beats
        deadline = time.monotonic() + 10
        while emitter.beats <= beats_after and time.monotonic() < deadline:
            time.sleep(0.1)
        assert emitter.beats > beats_after
        emitter.stop()

    # Nothing was claimed that is not on the topic, exactly where it was claimed.
    records = read_records(bootstrap, topics.events, 10_000, timeout=5)
    on_topic = {}
    for record in records:  # a batch record of publish_many may have landed after all
        for env_ in decode_records(record.value, trusted_keys):
            on_topic[env_.event_id] = (record.partition, record.offset)
    for published in claimed:
        assert on_topic[published.event_id] == (published.partition, published.offset)
    assert {p.event_id for p in claimed} <= set(on_topic)
