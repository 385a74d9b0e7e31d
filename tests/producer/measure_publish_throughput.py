"""Measure publish throughput: signed events, acks=all, idempotent (not a test).

Run from the repository root against a broker (devstack starts one)::

    .venv/bin/python -m devstack run -- \
        .venv/bin/python tests/producer/measure_publish_throughput.py

or with ``KAFKA_BOOTSTRAP_SERVERS`` pointing at a running broker. Prints events/s for
``publish()`` called in a loop (each call waits for its acknowledgement) and for
``publish_many()`` (send all, then wait for all), on fresh topics.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=2000, help="publish() calls (default 2000)")
    parser.add_argument("--bulk", type=int, default=20000, help="publish_many size (default 20000)")
    parser.add_argument("--partitions", type=int, default=3)
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

        now = datetime.now(UTC)
        events = [
            SubjectOffboarded(
                subject=Subject(id=f"svc-{i}", kind="service_account"),
                not_before=now,
                expires_at=expires,
            )
            for i in range(args.bulk)
        ]
        began = time.perf_counter()
        published = pub.publish_many(events)
        bulk = len(published) / (time.perf_counter() - began)
        print(
            f"publish_many():   {args.bulk:>6} events in {args.bulk / bulk:6.2f} s "
            f"= {bulk:8.0f} events/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
