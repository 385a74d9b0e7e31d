"""Watermarks on the real broker: forgery refused, exact to the batch, silence named, real fleet.

Records on the receipts topic are outside input: some here are written by hand with
kafka-python and with kcat (librdkafka), as anyone allowed to write that topic could.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime

import pytest
from producer_testkit import produce_raw

from consumers import RevocationConsumer
from producer import NotInForceError, ReceiptTracker, RevocationPublisher
from producer.publisher import Published
from schemas import (
    KeySet,
    Receipt,
    SessionRevoked,
    SigningKey,
    Subject,
    TopicNames,
    Watermark,
    in_seconds,
)

pytestmark = pytest.mark.integration

KCAT = shutil.which("kcat")


def kcat_produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    """One record through librdkafka's producer (kcat), not through any Python client."""
    assert KCAT, "kcat is missing: `make setup` installs it (Debian package kcat)"
    subprocess.run(
        [KCAT, "-b", bootstrap, "-P", "-t", topic, "-k", key.decode()],
        input=value,
        check=True,
        timeout=30,
    )


def session(subject: str = "u-1", sid: str = "s-1") -> SessionRevoked:
    return SessionRevoked(
        subject=Subject(id=subject, kind="human"), session_id=sid, expires_at=in_seconds(3600)
    )


def mark(
    topics: TopicNames,
    service: str,
    instance: str,
    offsets: dict[int, int],
    *,
    at: int | None = None,
    started: int = 1_790_000_000_000_000_000,
    period: float = 1.0,
) -> Watermark:
    return Watermark(
        service=service,
        instance=instance,
        topic=topics.events,
        offsets=offsets,
        applied_at_ns=at if at is not None else time.time_ns(),
        started_at_ns=started,
        period_s=period,
        ready=True,
    )


def send_marks(bootstrap: str, topics: TopicNames, *pairs: tuple[Watermark, bytes]) -> None:
    produce_raw(
        bootstrap,
        topics.receipts,
        [(f"{m.service}/{m.instance}".encode(), value) for m, value in pairs],
    )


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition(), "condition not met in time"


def test_hand_written_receipts_and_watermarks_cannot_forge_in_force(
    kafka_bootstrap: str, topics: TopicNames, signing_key: SigningKey
) -> None:
    service_key = SigningKey.generate("orders-2026")
    impostor = SigningKey.generate("orders-2026")  # the same kid, another key
    services = ["orders", "billing", "gateway"]
    with (
        ReceiptTracker(kafka_bootstrap, topics, service_keys=KeySet.of([service_key])) as tracker,
        RevocationPublisher(kafka_bootstrap, topics, signing_key, tracker=tracker) as pub,
    ):
        rev = pub.revoke(session())
        p = rev.published
        now = time.time_ns()
        receipt = Receipt(
            service="orders",
            instance="o-1",
            event_id=p.event_id,
            event_type=p.event_type,
            published_at_ns=p.published_at_ns,
            applied_at_ns=now,
            partition=p.partition,
            offset=p.offset,
        )
        unsigned = mark(topics, "billing", "b-1", {p.partition: p.offset + 1})
        wrongly_signed = mark(topics, "gateway", "g-1", {p.partition: p.offset + 1})
        # Three records anyone with write access could put there: two through kafka-python...
        produce_raw(
            kafka_bootstrap,
            topics.receipts,
            [(p.event_id.bytes, receipt.to_bytes()), (b"billing/b-1", unsigned.to_bytes())],
        )
        # ...and one through librdkafka.
        kcat_produce(
            kafka_bootstrap, topics.receipts, b"gateway/g-1", wrongly_signed.to_bytes(impostor)
        )
        wait_for(lambda: sum(tracker.refused.values()) == 3)
        assert tracker.refused == {"unsigned": 2, "bad_signature": 1}
        with pytest.raises(NotInForceError) as info:
            rev.wait_in_force(services, timeout=1.0)
        assert info.value.missing == tuple(services)
        with pytest.raises(NotInForceError, match="no service instance has announced itself"):
            rev.wait_in_force(timeout=0.5)
        assert tracker.fleet_status().instances == ()

        # A watermark signed with the service's key does count.
        genuine = mark(topics, "orders", "o-1", {p.partition: p.offset + 1})
        send_marks(kafka_bootstrap, topics, (genuine, genuine.to_bytes(service_key)))
        assert rev.wait_in_force(timeout=10).services["orders"].instances[0].via == "watermark"

    # Without service keys the same hand-written records are believed: what the keys are for.
    with ReceiptTracker(kafka_bootstrap, topics, start="beginning") as trusting:
        trusting.catch_up(timeout=10)
        trusting.track(p)
        assert set(trusting.wait_in_force(p, services, timeout=10).services) == set(services)


def test_in_force_is_exact_to_the_batch_at_its_edges(
    kafka_bootstrap: str, topics: TopicNames, signing_key: SigningKey
) -> None:
    key = SigningKey.generate("api-1")
    with (
        ReceiptTracker(kafka_bootstrap, topics, service_keys=KeySet.of([key])) as tracker,
        RevocationPublisher(kafka_bootstrap, topics, signing_key, tracker=tracker) as pub,
    ):
        batch = pub.publish_many([session("alice", f"s-{i}") for i in range(5)])
        after = pub.publish(session("alice", "s-after"))  # same subject: same partition, next
        part, at = after.partition, batch[0].offset
        assert {(b.partition, b.offset) for b in batch} == {(part, at)}
        assert after.offset == at + 1
        t1 = time.time_ns()
        # next_offset == the batch's offset: nothing of it applied yet.
        early = mark(topics, "api", "a-1", {part: at}, at=t1 - 1000)
        # next_offset - 1 == the batch's offset: the whole batch, not the event after it.
        edge = mark(topics, "api", "a-1", {part: at + 1}, at=t1)
        send_marks(
            kafka_bootstrap, topics, (early, early.to_bytes(key)), (edge, edge.to_bytes(key))
        )
        whole = [tracker.wait_in_force(b, timeout=10) for b in batch]
        for result, published in zip(whole, batch, strict=True):
            applied = result.services["api"].instances[0]
            assert applied.applied_at == edge_time(t1)
            assert applied.latency_ms == round((t1 - published.published_at_ns) / 1e6, 3)
        with pytest.raises(NotInForceError) as info:
            tracker.wait_in_force(after, timeout=0.5)
        assert info.value.pending == ("api/a-1",)
        assert info.value.status.waiting[0].applied_through == at
        t2 = time.time_ns()
        beyond = mark(topics, "api", "a-1", {part: at + 2}, at=t2)
        send_marks(kafka_bootstrap, topics, (beyond, beyond.to_bytes(key)))
        result = tracker.wait_in_force(after, timeout=10)
        assert result.in_force_at == edge_time(t2)
        # The batch stays in force at its first watermark, not the later one.
        assert tracker.status(batch[0].event_id).services["api"].instances[0].applied_at == (
            edge_time(t1)
        )


def edge_time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def test_a_silent_instance_is_named_never_skipped_and_a_restart_is_a_new_run(
    kafka_bootstrap: str, topics: TopicNames, signing_key: SigningKey
) -> None:
    with (
        ReceiptTracker(kafka_bootstrap, topics) as tracker,
        RevocationPublisher(kafka_bootstrap, topics, signing_key, tracker=tracker) as pub,
    ):
        start = time.time_ns()
        hello = [mark(topics, "web", i, {0: 0}, started=start, period=0.2) for i in ("w-1", "w-2")]
        send_marks(kafka_bootstrap, topics, *[(m, m.to_bytes()) for m in hello])
        wait_for(lambda: len(tracker.fleet_status().instances) == 2)
        rev = pub.revoke(session())
        p = rev.published
        time.sleep(1.0)  # w-2 says nothing more: silent after 3 periods (0.6 s)
        done = mark(topics, "web", "w-1", {p.partition: p.offset + 1}, started=start, period=0.2)
        send_marks(kafka_bootstrap, topics, (done, done.to_bytes()))
        with pytest.raises(NotInForceError) as info:
            rev.wait_in_force(timeout=1.0)
        assert info.value.silent == ("web/w-2",)
        assert info.value.missing == ("web",)
        assert "silent: web/w-2" in str(info.value)
        states = {i.instance: i.state for i in tracker.fleet_status().instances}
        assert states["w-2"] == "silent"
        accepted = rev.wait_in_force(timeout=1.0, silent_ok=True)
        assert accepted.silent == ("web/w-2",)
        assert [i.instance for i in accepted.services["web"].instances] == ["w-1"]

        # w-2 comes back as a new run (a restart) and replays past the event.
        back = mark(
            topics, "web", "w-2", {p.partition: p.offset + 1}, started=time.time_ns(), period=0.2
        )
        send_marks(kafka_bootstrap, topics, (back, back.to_bytes()))
        result = rev.wait_in_force(timeout=10)
        assert result.silent == ()
        assert [i.instance for i in result.services["web"].instances] == ["w-1", "w-2"]
        row = next(i for i in tracker.fleet_status().instances if i.instance == "w-2")
        assert row.runs == 2


# --------------------------------------------------------------------------- real consumers

FLEET = [("orders", "orders-1"), ("orders", "orders-2"), ("billing", "billing-1")]


@pytest.fixture
def keyed_fleet(
    kafka_bootstrap: str, topics: TopicNames, trusted_keys: KeySet
) -> Iterator[tuple[list[RevocationConsumer], KeySet]]:
    keys = {f"{s}/{i}": SigningKey.generate(f"{s}/{i}") for s, i in FLEET}
    with ExitStack() as stack:
        consumers = [
            stack.enter_context(
                RevocationConsumer(
                    kafka_bootstrap,
                    topics,
                    service,
                    instance,
                    trusted_keys,
                    instance_key=keys[f"{service}/{instance}"],
                    watermark_period=0.2,
                    per_event_receipts=False,
                )
            )
            for service, instance in FLEET
        ]
        for consumer in consumers:
            assert consumer.wait_ready(30), f"{consumer.service}/{consumer.instance} not ready"
        yield consumers, KeySet.of(keys.values())


def test_real_fleet_signed_watermarks_batches_and_a_stopped_instance(
    kafka_bootstrap: str,
    topics: TopicNames,
    signing_key: SigningKey,
    keyed_fleet: tuple[list[RevocationConsumer], KeySet],
) -> None:
    consumers, service_keys = keyed_fleet
    with (
        ReceiptTracker(kafka_bootstrap, topics, service_keys=service_keys) as tracker,
        RevocationPublisher(kafka_bootstrap, topics, signing_key, tracker=tracker) as pub,
    ):
        wait_for(lambda: len(tracker.fleet_status(lag=False).instances) == 3)
        rev = pub.revoke(session("carol", "s-one"))
        result = rev.wait_in_force(timeout=20)  # every live instance of every service
        assert sorted(result.services) == ["billing", "orders"]
        assert len(result.services["orders"].instances) == 2
        assert all(i.via == "watermark" for s in result.services.values() for i in s.instances)
        assert result.latency_ms >= 0

        # A bulk offboarding as batch records: every consumer applies every event.
        bulk = pub.publish_many([session(f"user-{i % 40}", f"bulk-{i}") for i in range(1200)])
        assert len({(b.partition, b.offset) for b in bulk}) < 100
        last = max(bulk, key=lambda b: (b.offset, b.partition))
        for published in (last, bulk[0]):
            tracker.wait_in_force(published, timeout=30)
        for consumer in consumers:
            assert all(consumer.state.is_session_revoked(f"bulk-{i}") for i in range(1200))
            assert consumer.stats().dead_lettered == 0

        # Idle now: every instance still live (its watermarks keep coming) and caught up.
        wait_for(
            lambda: all(
                i.state == "live" and i.ready and i.total_lag == 0
                for i in tracker.fleet_status().instances
            )
        )
        status = tracker.fleet_status()
        assert {(i.service, i.instance) for i in status.instances} == set(FLEET)
        assert tracker.refused == {}

        # One instance stops: it is reported silent, and the next revocation is not
        # "in force everywhere" while it is.
        stopped = consumers[1]
        stopped.stop()
        wait_for(
            lambda: any(
                i.instance == stopped.instance and i.state == "silent"
                for i in tracker.fleet_status(lag=False).instances
            )
        )
        later = pub.revoke(session("dave", "s-two"))
        with pytest.raises(NotInForceError) as info:
            later.wait_in_force(timeout=2)
        assert info.value.silent == (f"orders/{stopped.instance}",)
        assert set(later.wait_in_force(timeout=10, silent_ok=True).services) == {
            "orders",
            "billing",
        }


def test_a_revocation_published_elsewhere_is_located_in_the_events_topic(
    kafka_bootstrap: str, topics: TopicNames, signing_key: SigningKey
) -> None:
    with RevocationPublisher(kafka_bootstrap, topics, signing_key) as pub:
        published: Published = pub.publish_many([session("erin", f"s-{i}") for i in range(3)])[1]
    with ReceiptTracker(kafka_bootstrap, topics) as tracker:
        hello = mark(topics, "api", "a-1", {published.partition: published.offset + 1})
        send_marks(kafka_bootstrap, topics, (hello, hello.to_bytes()))
        result = tracker.wait_in_force(published.event_id, timeout=10)  # by id alone
        assert result.published_at.timestamp() == pytest.approx(
            published.published_at_ns / 1e9, abs=1e-6
        )
        status = tracker.status(published.event_id)
        assert (status.partition, status.offset) == (published.partition, published.offset)
        assert status.event_type == "session.revoked"


def test_an_event_an_instance_dead_lettered_is_not_in_force_there(
    kafka_bootstrap: str, topics: TopicNames, signing_key: SigningKey, trusted_keys: KeySet
) -> None:
    rogue = SigningKey.generate("rogue")  # a key the service does not trust
    with (
        RevocationConsumer(
            kafka_bootstrap, topics, "orders", "o-1", trusted_keys, watermark_period=0.2,
            per_event_receipts=False,
        ) as consumer,
        ReceiptTracker(kafka_bootstrap, topics) as tracker,
        RevocationPublisher(kafka_bootstrap, topics, rogue, tracker=tracker) as pub,
    ):  # fmt: skip
        assert consumer.wait_ready(30)
        wait_for(lambda: len(tracker.fleet_status(lag=False).instances) == 1)
        refused = pub.revoke(session("mallory", "s-rogue"))
        pub.rotate_key(signing_key)
        good = pub.revoke(session("mallory", "s-good"))  # same partition, after it
        assert good.published.offset > refused.published.offset
        assert good.wait_in_force(timeout=20).services["orders"].instances[0].via == "watermark"
        # Its watermarks are past the refused record, yet it never applied it. (The dead
        # letter is written before the watermark, but to another topic: let it be read.)
        wait_for(lambda: tracker.status(refused.event_id).refused == {"orders/o-1": "unknown_key"})
        with pytest.raises(NotInForceError) as info:
            refused.wait_in_force(timeout=1)
        assert info.value.status.refused == {"orders/o-1": "unknown_key"}
        assert "refused by orders/o-1 (unknown_key)" in str(info.value)
        assert not consumer.state.is_session_revoked("s-rogue")


@pytest.mark.parametrize("engine", ["kafka-python", "confluent"])
def test_every_engine_applies_batch_records_and_is_tracked_by_its_signed_watermarks(
    kafka_bootstrap: str,
    topics: TopicNames,
    signing_key: SigningKey,
    trusted_keys: KeySet,
    engine: str,
) -> None:
    own = SigningKey.generate(f"api-{engine}")
    with (
        RevocationConsumer(
            kafka_bootstrap, topics, "api", "api-1", trusted_keys, engine=engine,
            instance_key=own, watermark_period=0.5,
        ) as consumer,
        ReceiptTracker(kafka_bootstrap, topics, service_keys=KeySet.of([own])) as tracker,
        RevocationPublisher(kafka_bootstrap, topics, signing_key, tracker=tracker) as pub,
    ):  # fmt: skip
        assert consumer.wait_ready(30)
        bulk = pub.publish_many([session(f"t-{i % 7}", f"e-{i}") for i in range(600)])
        single = pub.revoke(session("t-0", "e-single"))
        for published in [*bulk, single.published]:
            applied = tracker.wait_in_force(published, timeout=30).services["api"].instances
            assert [(i.instance, i.via, i.flavor) for i in applied] == [
                ("api-1", "watermark", engine)
            ]
        assert all(consumer.state.is_session_revoked(f"e-{i}") for i in range(600))
        assert consumer.stats().dead_lettered == 0
        assert [i.engine for i in tracker.fleet_status(lag=False).instances] == [engine]


def test_a_watermark_lists_what_it_refused_so_the_dead_letter_can_come_later(
    kafka_bootstrap: str, topics: TopicNames, signing_key: SigningKey
) -> None:
    # No dead-letter record at all (it may arrive after the watermark, or never): the
    # signed watermark alone says the record it passes was not applied.
    with (
        ReceiptTracker(kafka_bootstrap, topics) as tracker,
        RevocationPublisher(kafka_bootstrap, topics, signing_key, tracker=tracker) as pub,
    ):
        rev = pub.revoke(session("u-9", "s-9"))
        p = rev.published
        passed = mark(topics, "orders", "o-1", {p.partition: p.offset + 1})
        passed = Watermark.model_validate(
            {**passed.model_dump(), "refused": {p.partition: (p.offset,)}}
        )
        send_marks(kafka_bootstrap, topics, (passed, passed.to_bytes()))
        wait_for(lambda: bool(tracker.status(rev.event_id).refused))
        with pytest.raises(NotInForceError) as info:
            rev.wait_in_force(["orders"], timeout=1.0)
        assert info.value.status.refused == {"orders/o-1": "dead_lettered"}


def test_status_shows_where_an_event_came_from(
    kafka_bootstrap: str, topics: TopicNames, signing_key: SigningKey, trusted_keys: KeySet
) -> None:
    from schemas import Source

    source = Source(
        channel="ssf", origin="https://idp.example", ref="set-jti-1", txn="txn-9",
        toe=datetime(2026, 11, 29, 12, 0, tzinfo=UTC), received_at=datetime.now(UTC),
    )  # fmt: skip
    event = SessionRevoked(
        subject=Subject(id="u-7", kind="human"), session_id="s-7",
        expires_at=in_seconds(3600), source=source,
    )  # fmt: skip
    with RevocationPublisher(kafka_bootstrap, topics, signing_key) as pub:
        published = pub.publish(event)
    assert published.source is not None
    assert published.source["ref"] == "set-jti-1"
    # Another process (revocast status EVENT_ID) finds it by id and reads its origin.
    with ReceiptTracker(kafka_bootstrap, topics) as tracker:
        assert tracker.locate(published.event_id, timeout=15)
        status = tracker.status(published.event_id)
    assert status.source is not None
    assert status.source["channel"] == "ssf"
    assert status.source["origin"] == "https://idp.example"
    assert (status.source["ref"], status.source["txn"]) == ("set-jti-1", "txn-9")
    from revocast.commands.status import _chain

    line = _chain(status.source)
    assert line.startswith("ssf https://idp.example SET set-jti-1 (txn txn-9, toe 2026-11-29")
