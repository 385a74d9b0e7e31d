"""Micro-benchmarks of the consumer side. Reports numbers; asserts nothing.

Run from the repository root (the devstack provides Kafka and Redis):

    python -m devstack run -- .venv/bin/python tests/consumers/bench_check.py
    .venv/bin/python tests/consumers/bench_check.py --entries 1000000   # no Redis/Kafka parts
                                                                        # unless their env is set

Measures:

* memory per entry of :class:`RevocationState` at N entries (tracemalloc), for
  session ids (UUID strings) and for a mix of all six kinds;
* ``check()`` for a miss and a hit, in ns (timeit, best of 5), against that state;
* one Redis ``GET`` and one :class:`RedisSessionLookup.is_revoked` round trip on
  loopback (``REDIS_URL``), in us;
* ``apply()`` throughput (decoded envelopes), ``decode()+apply()`` throughput
  (Ed25519-signed records), and the consumer's replay throughput from the real
  broker (``KAFKA_BOOTSTRAP_SERVERS``).
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import timeit
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from consumers import RedisSessionLookup, RevocationConsumer, RevocationState
from consumers.redis_store import connect
from schemas import (
    CredentialKind,
    CredentialRotated,
    Envelope,
    KeySet,
    SessionRevoked,
    SigningKey,
    Subject,
    SubjectKind,
    SubjectOffboarded,
    TopicNames,
    decode,
    encode,
)


def _best_ns(fn: Callable[[], object], number: int) -> float:
    timer = timeit.Timer(fn)
    overhead = min(timeit.Timer(lambda: None).repeat(5, number)) / number
    return (min(timer.repeat(5, number)) / number - overhead) * 1e9


def memory_per_entry(n: int, mixed: bool) -> tuple[RevocationState, float]:
    # The ids are created inside the traced region: in a consumer they come from
    # decoded events and live on only in the state, so they are part of its cost.
    exp = time.time() + 3600
    gc.collect()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    state = RevocationState()
    kinds = ("sessions", "tokens", "subjects", "claims", "kid", "client_id")
    for i in range(n):
        key = str(uuid.uuid4())
        if mixed:
            kind = kinds[i % 6]
            state.add(kind, key, exp + i % 3600, at=exp - 7200)
        else:
            state.add("sessions", key, exp + i % 3600)
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return state, (after - before) / n


def check_costs(state: RevocationState) -> tuple[float, float]:
    hit_sid = next(iter(state.snapshot()["sessions"]))
    now = int(time.time())
    miss = {"sub": "user-42", "sid": "no-such-session", "jti": "no-such-jti", "iat": now,
            "azp": "web-app"}  # fmt: skip
    header = {"kid": "key-2026", "alg": "ES256"}
    hit = {"sub": "user-42", "sid": hit_sid, "iat": now}
    return (
        _best_ns(lambda: state.check(miss, header), 200_000),
        _best_ns(lambda: state.check(hit, header), 200_000),
    )


def redis_costs(url: str) -> tuple[float, float]:
    client = connect(url)
    try:
        lookup = RedisSessionLookup(client, prefix=f"bench-{uuid.uuid4().hex[:6]}")
        lookup.revoke("s-1", time.time() + 600)
        client.set("bench:get", b"1", ex=600)
        for _ in range(500):  # warm the connection
            client.get("bench:get")
        get_us = _best_ns(lambda: client.get("bench:get"), 2_000) / 1000
        exists_us = _best_ns(lambda: lookup.is_revoked("s-2"), 2_000) / 1000
        return get_us, exists_us
    finally:
        client.close()


def _envelopes(n: int) -> list[Envelope]:
    exp = datetime.now(UTC) + timedelta(hours=1)
    past = datetime.now(UTC) - timedelta(seconds=1)
    out = []
    for i in range(n):
        subject = Subject(id=f"user-{i % 5000}", kind=SubjectKind.HUMAN)
        event: SessionRevoked | SubjectOffboarded | CredentialRotated
        if i % 3 == 0:
            event = SessionRevoked(subject=subject, session_id=str(uuid.uuid4()), expires_at=exp)
        elif i % 3 == 1:
            event = SubjectOffboarded(subject=subject, not_before=past, expires_at=exp)
        else:
            event = CredentialRotated(subject=subject, credential_id=f"c-{i}",
                                      credential_kind=CredentialKind.CLIENT, not_before=past,
                                      expires_at=exp)  # fmt: skip
        out.append(Envelope.wrap(event, issuer="bench"))
    return out


def apply_throughput(n: int) -> tuple[float, float]:
    envelopes = _envelopes(n)
    state = RevocationState()
    start = time.perf_counter()
    for env in envelopes:
        state.apply(env)
    applied = n / (time.perf_counter() - start)
    key = SigningKey.generate("bench")
    keys = KeySet.of([key])
    records = [encode(env, key) for env in envelopes]
    state = RevocationState()
    start = time.perf_counter()
    for record in records:
        state.apply(decode(record, keys))
    decoded = n / (time.perf_counter() - start)
    return applied, decoded


def replay_throughput(bootstrap: str, n: int) -> float:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    topics = TopicNames.prefixed(f"bench-{uuid.uuid4().hex[:8]}")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(t, 3, 1) for t in (topics.events, topics.receipts,
                                                     topics.dead_letter)])  # fmt: skip
    admin.close()
    key = SigningKey.generate("bench")
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5)
    for env in _envelopes(n):
        producer.send(topics.events, key=env.partition_key, value=encode(env, key))
    producer.flush()
    producer.close()
    consumer = RevocationConsumer(
        bootstrap, topics, "bench", "bench-1", KeySet.of([key]), publish_receipts=False
    )
    start = time.perf_counter()
    consumer.start()
    consumer.wait_ready(300)
    elapsed = time.perf_counter() - start
    consumer.stop()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--apply", type=int, default=30_000)
    args = parser.parse_args()
    print(f"RevocationState with {args.entries:,} entries")
    state, per_session = memory_per_entry(args.entries, mixed=False)
    print(f"  memory, session ids (UUID strings): {per_session:6.0f} bytes/entry")
    miss_ns, hit_ns = check_costs(state)
    del state
    gc.collect()
    mixed, per_mixed = memory_per_entry(args.entries, mixed=True)
    print(f"  memory, all six kinds mixed:        {per_mixed:6.0f} bytes/entry")
    del mixed
    print(f"  check() miss: {miss_ns:7.0f} ns   (sid, jti, sub, kid, azp looked up)")
    print(f"  check() hit:  {hit_ns:7.0f} ns   (session revoked)")
    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        get_us, exists_us = redis_costs(redis_url)
        print(f"Redis on loopback: GET {get_us:6.1f} us; RedisSessionLookup.is_revoked "
              f"{exists_us:6.1f} us")  # fmt: skip
    else:
        print("Redis: skipped (set REDIS_URL, or run under `python -m devstack run --`)")
    applied, decoded = apply_throughput(args.apply)
    print(f"apply(): {applied:10,.0f} events/s; decode()+apply() (EdDSA JWS): "
          f"{decoded:8,.0f} events/s")  # fmt: skip
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        rate = replay_throughput(bootstrap, args.apply)
        print(f"consumer replay from Kafka (3 partitions, {args.apply:,} signed events): "
              f"{rate:8,.0f} events/s")  # fmt: skip
    else:
        print("Kafka replay: skipped (set KAFKA_BOOTSTRAP_SERVERS)")


if __name__ == "__main__":
    main()
