"""revocast on SASL_SSL with ACLs: who may write which topic, enforced by the broker.

* the IAM principal publishes; a service's consumer applies and writes its receipt; the
  tracker (as IAM) sees the revocation in force: the integration path, once, secured;
* a service principal cannot write an event (TopicAuthorizationFailed), and nothing lands;
* a plaintext client, a TLS client without SASL, and a wrong password are refused.
"""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, TopicPartition

from consumers import RevocationConsumer
from devstack import KafkaBroker, SecureSetup
from devstack.secure import IAM_USER, service_user
from producer import ReceiptTracker, RevocationPublisher
from schemas import (
    BrokerUnavailableError,
    KeySet,
    PublishError,
    SessionRevoked,
    SigningKey,
    Subject,
    SubjectKind,
    TopicNames,
    in_seconds,
)
from schemas.security import KafkaSecurity

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.timeout(300)]


def _record_count(broker: KafkaBroker, setup: SecureSetup, topic: str) -> int:
    """How many records ``topic`` holds, asked as the admin (a super user)."""
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=None, **setup.admin_options()
    )
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = consumer.end_offsets(tps)
        starts = consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        consumer.close()


def _event(n: int) -> SessionRevoked:
    return SessionRevoked(
        subject=Subject(id=f"alice-{n}", kind=SubjectKind.HUMAN),
        session_id=f"s-{n}",
        expires_at=in_seconds(3600),
    )


def test_iam_publishes_service_applies_and_receipts_flow(
    secure_broker: KafkaBroker,
    secure_setup: SecureSetup,
    secure_topics: TopicNames,
    signing_key: SigningKey,
    trusted_keys: KeySet,
) -> None:
    iam = secure_setup.client(IAM_USER).to_kafka_python()
    svc = secure_setup.client(service_user("orders")).to_kafka_python()
    consumer = RevocationConsumer(
        secure_broker.bootstrap,
        secure_topics,
        "orders",
        "orders-1",
        trusted_keys,
        kafka_options=svc,
    ).start()
    try:
        assert consumer.wait_ready(timeout=60), "the service did not become ready over SASL_SSL"
        with (
            ReceiptTracker(secure_broker.bootstrap, secure_topics, kafka_options=iam) as tracker,
            RevocationPublisher(
                secure_broker.bootstrap,
                secure_topics,
                signing_key,
                tracker=tracker,
                kafka_options=iam,
            ) as publisher,
        ):
            revocation = publisher.revoke(_event(1))
            in_force = revocation.wait_in_force(["orders"], timeout=30)
            assert "orders" in in_force.services
            # An unsigned event is dead-lettered by the service: it may write dead letters.
            with RevocationPublisher(
                secure_broker.bootstrap,
                secure_topics,
                None,
                allow_unsigned=True,
                kafka_options=iam,
            ) as unsigned:
                unsigned.publish(_event(2))
        assert consumer.state.is_session_revoked("s-1")
        deadline = time.monotonic() + 30
        while _record_count(secure_broker, secure_setup, secure_topics.dead_letter) < 1:
            assert time.monotonic() < deadline, "the service's dead letter never landed"
            time.sleep(0.2)
        assert not consumer.state.is_session_revoked("s-2")
    finally:
        consumer.stop()


def test_a_service_principal_cannot_write_an_event(
    secure_broker: KafkaBroker,
    secure_setup: SecureSetup,
    secure_topics: TopicNames,
    signing_key: SigningKey,
) -> None:
    svc = secure_setup.client(service_user("billing")).to_kafka_python()
    with (
        RevocationPublisher(
            secure_broker.bootstrap,
            secure_topics,
            signing_key,
            delivery_timeout=5,
            kafka_options=svc,
        ) as publisher,
        pytest.raises(PublishError, match="TopicAuthorizationFailed"),
    ):
        publisher.publish(_event(3))
    assert _record_count(secure_broker, secure_setup, secure_topics.events) == 0


def test_a_plaintext_client_is_refused(
    secure_broker: KafkaBroker, secure_topics: TopicNames, signing_key: SigningKey
) -> None:
    with pytest.raises(BrokerUnavailableError):
        RevocationPublisher(secure_broker.bootstrap, secure_topics, signing_key, connect_timeout=3)


def test_tls_without_sasl_and_a_wrong_password_are_refused(
    secure_broker: KafkaBroker,
    secure_setup: SecureSetup,
    secure_topics: TopicNames,
    signing_key: SigningKey,
) -> None:
    tls_only = KafkaSecurity.model_validate(
        {"security_protocol": "SSL", "ssl_cafile": secure_setup.ca_file}
    )
    wrong = KafkaSecurity.model_validate(
        {
            **secure_setup.client(IAM_USER).model_dump(),
            "sasl_password": "not-the-password",
        }
    )
    for security in (tls_only, wrong):
        with pytest.raises(BrokerUnavailableError):
            RevocationPublisher(
                secure_broker.bootstrap,
                secure_topics,
                signing_key,
                connect_timeout=3,
                kafka_options=security.to_kafka_python(),
            )
