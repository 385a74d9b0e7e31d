"""A CAEP session-revoked SET pushed by an IdP, in force in two real services.

Real broker, real uvicorn, real :class:`consumers.RevocationConsumer` instances (each reading
every partition) with :class:`consumers.Verifier`: before the SET the user's token passes
everywhere; after the 202 it is rejected everywhere, and a session-only SET rejects exactly
that session. The time from the SET's POST to "applied in every service" is measured for a
series of SETs and printed (p50 / p99); no speed is asserted.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consumers import RevocationConsumer, RevokedTokenError, Verifier
from producer.ingress.ssf import PushServer
from producer.ingress.ssf.testing import session_revoked_set
from schemas import Envelope, KeySet, TopicNames
from tests.ingress_ssf.conftest import AUDIENCE, ISSUER, PUSH_TOKEN, SsfKit, transmitter

pytestmark = pytest.mark.integration

SERVICES = ("orders", "billing")
ROUNDS = 50
HEADERS = {"Content-Type": "application/secevent+jwt", "Authorization": f"Bearer {PUSH_TOKEN}"}


class Applied:
    """Records when each service applied each event (by the SET's jti in ``source.ref``)."""

    def __init__(self) -> None:
        self.at: dict[tuple[str, str], int] = {}
        self.cond = threading.Condition()

    def listener(self, service: str) -> Callable[[Envelope, int], None]:
        def on_applied(envelope: Envelope, applied_ns: int) -> None:
            source = getattr(envelope.event, "source", None)
            if source is not None and source.ref is not None:
                with self.cond:
                    self.at[(service, source.ref)] = applied_ns
                    self.cond.notify_all()

        return on_applied

    def wait(self, jti: str, timeout: float = 30.0) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all((s, jti) in self.at for s in SERVICES):
                left = deadline - time.monotonic()
                assert left > 0, f"SET {jti} not applied by every service: {self.at}"
                self.cond.wait(left)
            return {s: self.at[(s, jti)] for s in SERVICES}


def test_caep_session_revoked_rejects_the_users_tokens_in_every_service(
    kit: SsfKit,
    kafka_bootstrap: str,
    topics: TopicNames,
    trusted_keys: KeySet,
    capsys: pytest.CaptureFixture[str],
) -> None:
    idp_key = Ed25519PrivateKey.generate()  # the IdP's token-signing key
    tx = kit.keys["EdDSA"]
    settings = kit.settings(transmitter([tx]))
    issued = int(time.time()) - 5

    def token(sub: str, sid: str) -> str:
        claims = {"sub": sub, "sid": sid, "iat": issued, "exp": issued + 600, "iss": "idp"}
        return jwt.encode(claims, idp_key, algorithm="EdDSA")

    applied = Applied()
    consumers = [
        RevocationConsumer(
            kafka_bootstrap,
            topics,
            service=name,
            instance="i-1",
            keys=trusted_keys,
            on_applied=applied.listener(name),
            publish_receipts=False,
        )
        for name in SERVICES
    ]
    for c in consumers:
        c.start()
    latencies_ms: list[float] = []
    answered_ms: list[float] = []  # POST -> 202 (the publish acknowledged by Kafka)
    try:
        for c in consumers:
            assert c.wait_ready(timeout=30), f"{c.service} did not catch up: {c.error}"
        verifiers = [
            Verifier(idp_key.public_key(), algorithms=["EdDSA"], state=c.state, issuer="idp")
            for c in consumers
        ]
        alice, other_session, bystander = (
            token("alice", "s-a1"),
            token("bob", "s-b1"),
            token("bob", "s-b2"),
        )
        for v in verifiers:
            for t in (alice, other_session, bystander):
                v.verify(t)

        with PushServer(settings, kit.publisher, store=kit.store) as server, httpx.Client() as http:
            url = server.push_url("idp")

            def push(set_token: str) -> tuple[str, float]:
                jti = jwt.decode(set_token, options={"verify_signature": False})["jti"]
                started = time.time_ns()
                response = http.post(url, content=set_token, headers=HEADERS, timeout=30)
                assert response.status_code == 202, response.text
                answered_ms.append((time.time_ns() - started) / 1e6)
                at = applied.wait(jti)
                return jti, (max(at.values()) - started) / 1e6

            # the user only: SubjectOffboarded, every token of alice's is rejected
            _, ms = push(session_revoked_set(tx, iss=ISSUER, aud=AUDIENCE, user="alice"))
            latencies_ms.append(ms)
            # a session only: that one session of bob's is rejected, his other one is not
            _, ms = push(session_revoked_set(tx, iss=ISSUER, aud=AUDIENCE, session_id="s-b1"))
            latencies_ms.append(ms)
            for v in verifiers:
                with pytest.raises(RevokedTokenError) as info:
                    v.verify(alice)
                assert info.value.reason == "subject_offboarded"
                with pytest.raises(RevokedTokenError) as info:
                    v.verify(other_session)
                assert info.value.reason == "session_revoked"
                assert v.verify(bystander).claims["sid"] == "s-b2"
            for i in range(ROUNDS - 2):
                _, ms = push(
                    session_revoked_set(
                        tx, iss=ISSUER, aud=AUDIENCE, user=f"user-{i}", session_id=f"s-{i}"
                    )
                )
                latencies_ms.append(ms)
    finally:
        for c in consumers:
            c.stop()

    def p50_p99(values: list[float]) -> str:
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        return f"p50 {statistics.median(ordered):.1f} ms, p99 {p99:.1f} ms"

    with capsys.disabled():
        print(
            f"\n[ssf] {len(latencies_ms)} CAEP session-revoked SETs: POST -> 202 "
            f"{p50_p99(answered_ms)}; POST -> applied in {len(SERVICES)} services "
            f"{p50_p99(latencies_ms)}",
            flush=True,
        )
    assert len(latencies_ms) == ROUNDS
