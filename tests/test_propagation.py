"""One revocation, published once, in force in three services: the foundation's slice.

Real broker, real clients: a signed ``SessionRevoked`` goes through Kafka to three
consumers with three service names (each reading every partition); afterwards a JWT
carrying that session id is rejected by all three and an unrelated JWT is not.
The measured publish-to-apply latency of each service is printed.
"""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consumers import RevocationConsumer, RevokedTokenError, Verifier
from producer import ReceiptTracker, RevocationPublisher
from schemas import SessionRevoked, Subject, in_seconds

SERVICES = ("orders", "billing", "agents-gateway")

pytestmark = pytest.mark.integration


def test_one_session_revocation_reaches_three_services(
    kafka_bootstrap, topics, signing_key, trusted_keys, capsys
) -> None:
    idp_key = Ed25519PrivateKey.generate()  # the identity provider's token-signing key
    now = int(time.time())

    def token(sid: str) -> str:
        claims = {"sub": "u-alice", "sid": sid, "iat": now, "exp": now + 600, "iss": "idp"}
        return jwt.encode(claims, idp_key, algorithm="EdDSA")

    doomed, unrelated = token("sess-doomed"), token("sess-fine")

    consumers = [
        RevocationConsumer(kafka_bootstrap, topics, service=name, instance="i-1", keys=trusted_keys)
        for name in SERVICES
    ]
    with ReceiptTracker(kafka_bootstrap, topics, start="beginning") as tracker:
        for c in consumers:
            c.start()
        try:
            for c in consumers:
                assert c.wait_ready(timeout=30), f"{c.service} did not catch up: {c.error}"
            verifiers = {
                c.service: Verifier(
                    idp_key.public_key(), algorithms=["EdDSA"], state=c.state, issuer="idp"
                )
                for c in consumers
            }
            for v in verifiers.values():  # before: both tokens pass everywhere
                v.verify(doomed)
                v.verify(unrelated)

            with RevocationPublisher(
                kafka_bootstrap, topics, signing_key, tracker=tracker, issuer="tests"
            ) as publisher:
                revocation = publisher.revoke(
                    SessionRevoked(
                        subject=Subject(id="u-alice", kind="human"),
                        session_id="sess-doomed",
                        expires_at=in_seconds(600),
                        reason="stolen laptop",
                    )
                )
                in_force = revocation.wait_in_force(services=list(SERVICES), timeout=30)
        finally:
            for c in consumers:
                c.stop()

    assert set(in_force.services) == set(SERVICES)
    for name, v in verifiers.items():
        with pytest.raises(RevokedTokenError) as info:
            v.verify(doomed)
        assert info.value.reason == "session_revoked", name
        assert v.verify(unrelated).claims["sid"] == "sess-fine"

    with capsys.disabled():
        print(f"\n  SessionRevoked {revocation.event_id}: publish -> applied")
        for name in SERVICES:
            print(f"    {name:<16} {in_force.services[name].first_ms:8.2f} ms")
        print(f"    in force everywhere after {in_force.latency_ms:.2f} ms")
