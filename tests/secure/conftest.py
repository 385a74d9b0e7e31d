"""A secured single-node broker (SASL_SSL, SCRAM-SHA-512, ACLs) for the tests of this folder.

The broker is this module's own (devstack, free loopback ports): TLS with a freshly
generated CA, SCRAM users created at format time, the StandardAuthorizer, and the trust
model's ACLs on each test's topics (devstack/secure.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import DevstackError, KafkaBroker, SecureSetup
from producer.topics import ensure_topics
from schemas import TopicNames

SERVICES = ("orders", "billing")


@pytest.fixture(scope="module")
def secure_setup(tmp_path_factory: pytest.TempPathFactory) -> SecureSetup:
    return SecureSetup.generate(Path(tmp_path_factory.mktemp("tls")), SERVICES)


@pytest.fixture(scope="module")
def secure_broker(
    request: pytest.FixtureRequest, secure_setup: SecureSetup
) -> Iterator[KafkaBroker]:
    try:
        broker = KafkaBroker(security=secure_setup, start_timeout=120).start()
    except DevstackError as exc:
        pytest.fail(
            f"cannot start the secured Kafka broker: {exc}\nFix: run `make setup` (Java 17, "
            "Maven, the Kafka jars).",
            pytrace=False,
        )
    if broker.start_seconds is not None:
        terminal = request.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is not None:  # past output capture: the start time is a figure we report
            terminal.write_line(
                f"[revocast] secure: SASL_SSL broker started in {broker.start_seconds:.1f} s"
            )
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def secure_topics(secure_broker: KafkaBroker, secure_setup: SecureSetup) -> TopicNames:
    """Fresh revocast topics, created by the admin, with the trust model's ACLs."""
    names = TopicNames.prefixed(f"s-{uuid.uuid4().hex[:8]}")
    ensure_topics(secure_broker.bootstrap, names, kafka_options=secure_setup.admin_options())
    secure_setup.grant(secure_broker.bootstrap, names)
    return names
