"""The publisher's batch payload is byte for byte the contract's (no broker needed)."""

from __future__ import annotations

from datetime import UTC, datetime

from producer.batching import batch_payload
from schemas import (
    Envelope,
    EventBatch,
    Heartbeat,
    KeySet,
    SessionRevoked,
    SigningKey,
    Source,
    Subject,
    SubjectOffboarded,
    decode_records,
    encode_batch,
    in_seconds,
)


def test_batch_payload_is_what_encode_batch_signs() -> None:
    envs = [
        Envelope.wrap(
            SessionRevoked(
                subject=Subject(id="ünï-çødé \u2028", kind="human", tenant="t"),
                session_id=f"s-{i}",
                expires_at=in_seconds(60),
                reason='quotes " and \\ backslashes',
            ),
            issuer="iam",
        )
        for i in range(3)
    ]
    envs.append(
        Envelope.wrap(
            SubjectOffboarded(
                subject=Subject(id="svc", kind="service_account"),
                not_before=datetime.now(UTC),
                expires_at=in_seconds(60),
                source=Source(channel="scim", received_at=datetime.now(UTC)),
            ),
            issuer="iam",
        )
    )
    envs.append(Envelope.wrap(Heartbeat(partition=2, emitter="hb"), issuer="iam"))
    jsons = [env.model_dump_json().encode() for env in envs]
    assert batch_payload(jsons) == EventBatch(events=tuple(envs)).model_dump_json().encode()
    key = SigningKey.generate("k")
    assert decode_records(key.sign(batch_payload(jsons)), KeySet.of([key])) == envs
    assert decode_records(encode_batch(envs, key), KeySet.of([key])) == envs
