"""A single record must never stop revocation, and a stuck consumer must never look healthy.

Records here are written by clients this project did not write (kcat, librdkafka),
the way an attacker with write access to the topic would write them. Every test that
runs a consumer runs once per engine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from consumers import RevocationConsumer
from consumers.core import dead_letter_headers
from consumers.freshness import FreshnessGuard
from devstack import KafkaBroker
from schemas import (
    Envelope,
    KeySet,
    SchemaViolationError,
    SessionRevoked,
    SigningKey,
    Subject,
    TopicNames,
    in_seconds,
)
from schemas.topics import DLQ_REASON_HEADER, DLQ_SOURCE_HEADER
from tests.conftest import create_topics

pytestmark = pytest.mark.integration

KCAT = shutil.which("kcat")


def kcat_produce(bootstrap: str, topic: str, payload: bytes, *extra: bytes | str) -> None:
    """One record through librdkafka, with arguments no Python client would send."""
    assert KCAT, "kcat is missing: `make setup` installs it (Debian package kcat)"
    args: list[Any] = [KCAT, "-b", bootstrap, "-P", "-t", topic, "-p", "0", *extra]
    env = dict(os.environ, LC_ALL="C")
    subprocess.run(
        [a if isinstance(a, bytes) else a.encode() for a in args],
        input=payload,
        check=True,
        timeout=30,
        env=env,
    )


def reasons(records: list[Any]) -> list[str]:
    return [dict(r.headers).get(DLQ_REASON_HEADER, b"").decode() for r in records]


def session(i: int) -> Envelope:
    return Envelope.wrap(
        SessionRevoked(
            subject=Subject(id=f"u-{i}", kind="human"), session_id=f"s-{i}",
            expires_at=in_seconds(600),
        ),
        issuer="tests",
    )  # fmt: skip


@pytest.fixture
def consumer_factory(
    kafka_bootstrap: str, topics: TopicNames, trusted_keys: KeySet, registry: Any, engine: str
) -> Iterator[Callable[..., RevocationConsumer]]:
    made: list[RevocationConsumer] = []

    def make(name: str = "orders", **kwargs: Any) -> RevocationConsumer:
        c = RevocationConsumer(
            kafka_bootstrap, topics, name, f"{name}-{len(made)}", trusted_keys,
            registry=registry, engine=engine, **kwargs,
        )  # fmt: skip
        made.append(c)
        return c.start()

    yield make
    for c in made:
        c.stop()


def test_a_header_name_no_client_can_parse_is_skipped_and_dead_lettered(
    kafka_bootstrap, topics, publisher, consumer_factory, read, until, engine
) -> None:
    before, after = session(1), session(2)
    publisher.send(before, partition=0)
    publisher.flush()
    # The header *name* is invalid UTF-8: kafka-python raises inside poll() and used
    # to spin on the same batch forever, on every service at once.
    kcat_produce(kafka_bootstrap, topics.events, b"poison", "-H", b"x-\xff=v")
    publisher.send(after, partition=0)
    publisher.heartbeats()
    publisher.flush()

    consumer = consumer_factory()
    assert consumer.wait_ready(30), consumer.freshness().reason
    assert until(lambda: not consumer.state.check({"sid": "s-2"}).allowed, 15)
    assert not consumer.state.check({"sid": "s-1"}).allowed
    assert consumer.ready
    assert consumer.guard.problem() is None

    dead = read(kafka_bootstrap, topics.dead_letter, lambda r: len(r) >= 1, timeout=15)
    if engine == "kafka-python":
        # kafka-python never hands over the record: skipped by offset, coordinates only.
        assert reasons(dead) == ["unparseable"]
    else:
        # librdkafka reads header names as bytes: the record arrives, is no event, and
        # is dead-lettered with its raw value.
        assert reasons(dead) == ["undecodable"]
        assert dead[0].value == b"poison"
    source = dict(dead[0].headers)[DLQ_SOURCE_HEADER].decode()
    assert source == f"{topics.events}/0/1"  # before=0, poison=1, after=2

    # Live too: a second poison while running does not stop applies after it.
    kcat_produce(kafka_bootstrap, topics.events, b"poison-2", "-H", b"\xc3\x28=v")
    publisher.send(session(3), partition=0)
    publisher.flush()
    assert until(lambda: not consumer.state.check({"sid": "s-3"}).allowed, 15)
    assert consumer.stats().dead_lettered == 2


def test_random_garbage_from_kcat_is_undecodable(
    kafka_bootstrap, topics, publisher, consumer_factory, read
) -> None:
    kcat_produce(kafka_bootstrap, topics.events, os.urandom(64).replace(b"\n", b"x"))
    kcat_produce(kafka_bootstrap, topics.events, b"hello world")
    publisher.heartbeats()
    publisher.flush()
    consumer = consumer_factory()
    assert consumer.wait_ready(30)
    dead = read(kafka_bootstrap, topics.dead_letter, lambda r: len(r) >= 2, timeout=15)
    assert sorted(reasons(dead)) == ["undecodable", "undecodable"]


def test_a_signed_event_with_an_absurd_time_is_dead_lettered_not_fatal(
    kafka_bootstrap, topics, publisher, consumer_factory, signing_key: SigningKey, read, until
) -> None:
    raw = session(7).model_dump(mode="json")
    raw["published_at_ns"] = 10**400  # OverflowError in every consumer, before
    import json

    publisher.send_raw(signing_key.sign(json.dumps(raw).encode()), partition=0)
    publisher.send(session(8), partition=0)
    publisher.heartbeats()
    publisher.flush()
    consumer = consumer_factory()
    assert consumer.wait_ready(30)
    assert until(lambda: not consumer.state.check({"sid": "s-8"}).allowed, 15)
    assert consumer.error is None
    dead = read(kafka_bootstrap, topics.dead_letter, lambda r: len(r) >= 1, timeout=15)
    assert reasons(dead) == [SchemaViolationError.reason]


def test_a_planted_reason_header_cannot_lead_the_dead_letter() -> None:
    class Bad(SchemaViolationError):
        pass

    headers = dead_letter_headers(
        [(DLQ_REASON_HEADER, b"all_good"), ("trace", b"1")], Bad("x"), "t/0/1", "svc/1"
    )
    assert headers[0] == (DLQ_REASON_HEADER, Bad.reason.encode())
    assert [v for k, v in headers if k == DLQ_REASON_HEADER] == [Bad.reason.encode()]
    assert ("trace", b"1") in headers


def test_a_consumer_whose_position_stops_advancing_turns_unhealthy(
    publisher, consumer_factory, events, until
) -> None:
    publisher.heartbeats()
    publisher.flush()
    consumer = consumer_factory(max_staleness=1.0)
    assert consumer.wait_ready(30)
    assert consumer.ready
    # Wedge it the way a client bug would: the loop turns, polls return nothing.
    consumer._engine.pause()
    for env in events(6):
        publisher.send(env)
    publisher.flush()
    assert until(lambda: not consumer.ready, 15), consumer.freshness()
    problem = consumer.guard.problem()
    assert problem is not None
    assert "has not advanced" in problem
    assert "stuck" in (consumer.denial() or "")
    consumer._engine.resume()
    assert until(lambda: consumer.ready, 15)


def test_future_publish_times_are_clamped_and_the_skew_reported() -> None:
    guard = FreshnessGuard(max_staleness=5.0)
    guard.set_partitions([0])
    guard.mark_ready()
    now = time.time()
    guard.observe(0, published_at=now + 3600, received_at=now)  # a clock 1 h ahead
    assert guard.denial(now + 1) is None
    assert guard.denial(now + 6) is not None  # not fresh for an hour
    report = guard.report(now + 1)
    assert 3599 < report.clock_skew <= 3600


def test_polls_that_keep_failing_turn_unhealthy() -> None:
    guard = FreshnessGuard(max_staleness=1.0, stall_after=0.2)
    guard.set_partitions([0])
    guard.mark_ready()
    guard.observe(0, time.time())
    guard.poll_failed("KafkaConnectionError: refused")
    assert guard.problem() is None
    time.sleep(0.3)
    assert "polls have failed" in (guard.problem() or "")
    guard.poll_ok()
    assert guard.problem() is None


# ---------------------------------------------------------------- broker restart


def test_consumers_resume_within_seconds_of_the_broker_coming_back(
    private_broker: KafkaBroker, signing_key: SigningKey, trusted_keys: KeySet, registry, engine
) -> None:
    from tests.consumers.conftest import Publisher, wait_until

    bootstrap = private_broker.bootstrap
    topics = TopicNames.prefixed(f"r-{uuid.uuid4().hex[:8]}")
    create_topics(bootstrap, topics)
    consumer = RevocationConsumer(
        bootstrap, topics, "orders", "orders-r", trusted_keys, registry=registry, engine=engine
    ).start()
    try:
        pub = Publisher(bootstrap, topics, signing_key)
        pub.heartbeats()
        pub.flush()
        assert consumer.wait_ready(30)
        pub.close()

        private_broker.stop(keep_data=True)
        time.sleep(3)  # long enough for the reconnect backoff to grow
        private_broker.start()
        back = time.monotonic()
        pub = Publisher(bootstrap, topics, signing_key)
        env = pub.send(session(42))
        pub.flush()
        assert wait_until(lambda: not consumer.state.check({"sid": "s-42"}).allowed, 30)
        resumed = time.monotonic() - back
        pub.close()
        print(f"\n[revocast] consumer applied again {resumed:.2f}s after the broker restarted")
        # Bounded by the 1 s reconnect cap, not kafka-python's 30 s default; the
        # margin is for a loaded 2-core machine (this is a bound, not a speed claim).
        assert resumed < 15, resumed
        assert env.event_id
    finally:
        consumer.stop()


@pytest.mark.timeout(150)
def test_the_faust_worker_survives_a_record_its_client_cannot_parse(
    kafka_bootstrap, topics, publisher, trusted_keys, read, tmp_path
) -> None:
    import json
    import signal
    import sys

    from schemas import Receipt

    publisher.send(session(1), partition=0)
    publisher.flush()
    kcat_produce(kafka_bootstrap, topics.events, b"poison", "-H", b"x-\xff=v")
    sent = publisher.send(session(2), partition=0)
    publisher.flush()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(trusted_keys.to_jwks()))
    stderr = (tmp_path / "faust.stderr").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "consumers.faust_app", "--service", "faust-svc",
            "--bootstrap", kafka_bootstrap, "--topic-prefix", topics.events.split(".")[0],
            "--jwks", str(jwks),
        ],
        stdout=subprocess.DEVNULL, stderr=stderr,
    )  # fmt: skip
    try:
        receipts = read(kafka_bootstrap, topics.receipts, lambda r: len(r) >= 2, timeout=60)
        dead = read(kafka_bootstrap, topics.dead_letter, lambda r: len(r) >= 1, timeout=15)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        stderr.close()
    log = (tmp_path / "faust.stderr").read_text()[-3000:]
    assert code == 0, log
    assert sent.event_id in {Receipt.from_bytes(r.value).event_id for r in receipts}, log
    assert reasons(dead) == ["unparseable"]
    assert dict(dead[0].headers)[DLQ_SOURCE_HEADER].decode() == f"{topics.events}/0/1"


def test_the_watermark_after_a_dead_letter_lists_it_as_refused(
    kafka_bootstrap, topics, publisher, consumer_factory, read, until
) -> None:
    from schemas import Watermark

    publisher.send(session(11), partition=0)
    publisher.send_raw(b"not an event", partition=0)  # offset 1: dead-lettered
    publisher.send(session(12), partition=0)
    publisher.heartbeats()
    publisher.flush()
    consumer = consumer_factory()
    assert consumer.wait_ready(30)

    def refused() -> dict[int, tuple[int, ...]]:
        found: dict[int, tuple[int, ...]] = {}
        for r in read(kafka_bootstrap, topics.receipts, lambda _: True, timeout=1):
            found.update(Watermark.from_bytes(r.value).refused)
        return found

    assert until(lambda: refused().get(0) == (1,), 20)
