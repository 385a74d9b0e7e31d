"""Measure publish throughput: signed events, acks=all, idempotent (not a test).

Run from the repository root against a broker (devstack starts one)::

    .venv/bin/python -m devstack run -- \
        .venv/bin/python tests/producer/measure_publish_throughput.py

or with ``KAFKA_BOOTSTRAP_SERVERS`` pointing at a running broker. Prints events/s for
``publish()`` called in a loop (each call waits for its acknowledgement) and for
``publish_many()`` (send all, then wait for all) with batch records and with one record
per event, with the records written per second, on fresh topics. With ``--in-force N``
it also starts ``--services`` real consumers and reports the publish-to-in-force latency
(every instance, from their watermarks) of N single revocations, and how long a bulk of
``--bulk`` batch-record events takes to be in force everywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import UTC, datetime

from producer import RevocationPublisher, ensure_topics
from schemas import SessionRevoked, SigningKey, Subject, SubjectOffboarded, TopicNames, in_seconds


def offboardings(prefix: str, n: int) -> list[SubjectOffboarded]:
    """``n`` offboarded service accounts, each its own subject (spread over partitions)."""
    now, expires = datetime.now(UTC), in_seconds(3600)
    return [
        SubjectOffboarded(
            subject=Subject(id=f"{prefix}-{i}", kind="service_account"),
            not_before=now,
            expires_at=expires,
        )
        for i in range(n)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=2000, help="publish() calls (default 2000)")
    parser.add_argument("--bulk", type=int, default=20000, help="publish_many size (default 20000)")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument(
        "--in-force",
        type=int,
        default=0,
        metavar="N",
        help="also measure publish-to-in-force of N revocations (default 0: no)",
    )
    parser.add_argument("--services", type=int, default=2, help="consumers for --in-force")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        print(
            "set KAFKA_BOOTSTRAP_SERVERS, or run under `python -m devstack run --`", file=sys.stderr
        )
        return 2
    topics = TopicNames.prefixed(f"bench-{uuid.uuid4().hex[:8]}")
    ensure_topics(bootstrap, topics, partitions=args.partitions)
    key = SigningKey.generate("bench")
    expires = in_seconds(3600)
    with RevocationPublisher(bootstrap, topics, key) as pub:
        pub.publish(
            SessionRevoked(
                subject=Subject(id="warm", kind="human"), session_id="w", expires_at=expires
            )
        )
        began = time.perf_counter()
        for i in range(args.single):
            pub.publish(
                SessionRevoked(
                    subject=Subject(id=f"u-{i % 100}", kind="human"),
                    session_id=f"s-{i}",
                    expires_at=expires,
                )
            )
        single = args.single / (time.perf_counter() - began)
        print(
            f"publish() loop:   {args.single:>6} events in {args.single / single:6.2f} s "
            f"= {single:8.0f} events/s ({1000 / single:.2f} ms per acknowledged event)"
        )

        for batch_records in (False, True):
            events = offboardings("svc", args.bulk)
            pub.batch_records = batch_records
            began = time.perf_counter()
            published = pub.publish_many(events)
            took = time.perf_counter() - began
            records = len({(p.partition, p.offset) for p in published})
            print(
                f"publish_many({'batch records' if batch_records else 'record per event'}): "
                f"{args.bulk} events in {took:6.2f} s = {len(published) / took:8.0f} events/s, "
                f"{records} records = {records / took:8.0f} records/s"
            )
    if args.in_force:
        in_force(bootstrap, topics, key, args)
    return 0


def in_force(bootstrap: str, topics: TopicNames, key: SigningKey, args: argparse.Namespace) -> None:
    """Publish to in force at every instance of real consumers, as the tracker sees it."""
    from contextlib import ExitStack

    from consumers import RevocationConsumer
    from producer import ReceiptTracker
    from schemas import KeySet

    expires = in_seconds(3600)
    with ExitStack() as stack:
        consumers = [
            stack.enter_context(
                RevocationConsumer(
                    bootstrap, topics, f"svc-{n}", f"svc-{n}-1", KeySet.of([key]),
                    per_event_receipts=False,
                )
            )
            for n in range(args.services)
        ]  # fmt: skip
        for consumer in consumers:
            consumer.wait_ready(600)
        tracker = stack.enter_context(ReceiptTracker(bootstrap, topics))
        pub = stack.enter_context(RevocationPublisher(bootstrap, topics, key, tracker=tracker))
        deadline = time.monotonic() + 30
        while len(tracker.fleet_status(lag=False).instances) < args.services:
            if time.monotonic() > deadline:
                raise SystemExit("the consumers sent no watermarks within 30 s")
            time.sleep(0.1)
        latencies = []
        for i in range(args.in_force):
            rev = pub.revoke(
                SessionRevoked(
                    subject=Subject(id=f"lat-{i}", kind="human"), session_id=f"l-{i}",
                    expires_at=expires,
                )
            )  # fmt: skip
            latencies.append(rev.wait_in_force(timeout=30).latency_ms)
            time.sleep(0.05)
        latencies.sort()
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(
            f"in force at all {args.services} instances (single publish, watermarks): "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms over {len(latencies)}"
        )
        bulk = offboardings("bulk", args.bulk)
        began = time.perf_counter()
        published = pub.publish_many(bulk)
        last_per_partition = {p.partition: p for p in sorted(published, key=lambda p: p.offset)}
        last = max(published, key=lambda p: p.offset)
        slowest = max(
            tracker.wait_in_force(p, timeout=600).in_force_at for p in last_per_partition.values()
        )
        took = slowest.timestamp() - published[0].published_at_ns / 1e9
        print(
            f"bulk of {args.bulk} (batch records) in force at all {args.services} instances "
            f"{took:.2f} s after the first was stamped = {args.bulk / took:.0f} events/s "
            f"end to end (publish_many returned after {time.perf_counter() - began:.2f} s; "
            f"last record {last.partition}@{last.offset})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
