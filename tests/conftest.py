"""Shared fixtures.

Integration tests ask for ``services``: the real Kafka broker and Redis, found in
this order (the same as the demo and the benchmark):

1. ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` when set;
2. testcontainers, when a Docker engine answers;
3. the local launcher in ``devstack/`` (Kafka jars from Maven Central, Debian's
   redis-server).

When none can start, the test fails with a message that says how to fix it: an
integration test never skips because a broker is missing.
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from devstack import DevstackError, KafkaBroker, Services, resolve_services
from schemas import KeySet, SigningKey, TopicNames

PARTITIONS = 3


@pytest.fixture(autouse=True)
def clean_environ() -> Iterator[None]:
    """Restore the environment after every test (entry points read it)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def services(request: pytest.FixtureRequest) -> Iterator[Services]:
    try:
        stack = resolve_services()
        started = stack.__enter__()
    except DevstackError as exc:
        pytest.fail(
            f"cannot start Kafka/Redis for integration tests: {exc}\n"
            "Fix: run `make setup` (installs redis-server, fetches the Kafka jars), or point "
            "KAFKA_BOOTSTRAP_SERVERS and REDIS_URL at running services.",
            pytrace=False,
        )
    # Shown in the CI log even with output capture on: which broker the tests talk to.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(
            f"\n[revocast] Kafka {started.kafka_version} at {started.kafka_bootstrap} "
            f"({started.source}); Redis at {started.redis_url}",
            flush=True,
        )
    try:
        yield started
    finally:
        stack.__exit__(None, None, None)


@pytest.fixture(scope="module")
def private_broker() -> Iterator[KafkaBroker]:
    """A broker of the test module's own (devstack, free loopback ports), for tests that
    stop and restart it; the shared one stays up for everyone else."""
    broker = KafkaBroker(start_timeout=90)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        gc.collect()  # kafka-python leaves sockets of refused connects behind


@pytest.fixture(scope="session")
def kafka_bootstrap(services: Services) -> str:
    return services.kafka_bootstrap


@pytest.fixture(scope="session")
def redis_url(services: Services) -> str:
    return services.redis_url


def create_topics(bootstrap: str, names: TopicNames, partitions: int = PARTITIONS) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="revocast-tests")
    try:
        admin.create_topics(
            [
                NewTopic(name=t, num_partitions=partitions, replication_factor=1)
                for t in (names.events, names.receipts, names.dead_letter)
            ]
        )
    finally:
        admin.close()


@pytest.fixture
def topics(kafka_bootstrap: str) -> TopicNames:
    """A fresh, isolated set of topics (events, receipts, dead letter) for one test."""
    names = TopicNames.prefixed(f"t-{uuid.uuid4().hex[:10]}")
    create_topics(kafka_bootstrap, names)
    return names


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey.generate("test-key-1")


@pytest.fixture(scope="session")
def trusted_keys(signing_key: SigningKey) -> KeySet:
    return KeySet.of([signing_key])
