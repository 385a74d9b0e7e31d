"""``revocast topics ensure``: create missing topics with safe retention, check existing ones.

Each topic is reported in one line with its retention in human units; each warning is printed
once, on stderr. ``--alter-retention`` raises the retention of existing state topics that keep
less than the credential lifetime + margin (never lowers it). The events topic's retention is
what ``revocast revoke`` later trusts as the longest lifetime it may guard, so the lifetime
given here is remembered by the broker itself.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import timedelta
from typing import Any

from producer.settings import parse_duration
from producer.topics import TopicsReport, TopicState, ensure_topics, human_duration
from revocast.argtypes import duration_arg, positive_int
from revocast.commands import Subparsers
from revocast.options import print_json, producer_settings
from schemas import ConfigError

__all__ = ["register"]


def register(subparsers: Subparsers) -> None:
    topics = subparsers.add_parser("topics", help="manage revocast's Kafka topics")
    tsub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    ensure = tsub.add_parser("ensure", help="create missing topics, check existing ones")
    ensure.add_argument("--partitions", type=positive_int, help="default: $REVOCAST_PARTITIONS")
    ensure.add_argument("--replication-factor", type=positive_int)
    ensure.add_argument("--min-insync-replicas", type=positive_int)
    ensure.add_argument(
        "--max-credential-lifetime",
        type=duration_arg,
        metavar="DURATION",
        help="longest lifetime of a credential a revocation may guard: 24h, 7d "
        "(default: $REVOCAST_MAX_CREDENTIAL_LIFETIME); the events topic keeps this + --margin",
    )
    ensure.add_argument(
        "--margin",
        type=duration_arg,
        metavar="DURATION",
        help="default: $REVOCAST_RETENTION_MARGIN",
    )
    ensure.add_argument(
        "--receipts-retention",
        type=duration_arg,
        metavar="DURATION",
        help="default: $REVOCAST_RECEIPTS_RETENTION",
    )
    ensure.add_argument(
        "--alter-retention",
        action="store_true",
        help="raise retention.ms of existing events/dead-letter topics that keep less than "
        "lifetime + margin (never lowers it)",
    )
    ensure.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    ensure.add_argument("--json", action="store_true", help="print JSON")
    ensure.set_defaults(handler=run)


def _report_json(report: TopicsReport) -> list[dict[str, Any]]:
    return [
        {
            "role": t.role,
            "name": t.name,
            "created": t.created,
            "partitions": t.partitions,
            "replication_factor": t.replication_factor,
            "retention_ms": t.retention_ms,
            "retention": t.retention,
            "altered_from_ms": t.altered_from_ms,
            "min_insync_replicas": t.min_insync_replicas,
            "warnings": list(t.warnings),
        }
        for t in report.topics
    ]


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


def _topic_line(t: TopicState, covers: str | None) -> str:
    retention = t.retention
    if t.altered_from_ms is not None:
        retention = f"{retention} (raised from {human_duration(t.altered_from_ms)})"
    if covers is not None:
        retention = f"{retention}; must cover {covers}"
    return (
        f"{'created' if t.created else 'exists '} {t.name}: {t.partitions} partitions, "
        f"replication factor {t.replication_factor}, min ISR {t.min_insync_replicas}, "
        f"retention {retention}"
    )


def run(args: argparse.Namespace) -> int:
    # The library logs each warning; this command prints them itself, once, on stderr.
    logging.getLogger("producer.topics").setLevel(logging.ERROR)
    settings = producer_settings(args)
    rf = args.replication_factor or settings.replication_factor
    min_isr = args.min_insync_replicas or min(settings.min_insync_replicas, rf)
    lifetime = (
        parse_duration(args.max_credential_lifetime)
        if args.max_credential_lifetime
        else settings.max_credential_lifetime
    )
    margin = parse_duration(args.margin) if args.margin else settings.retention_margin
    report = ensure_topics(
        settings.bootstrap_servers,
        settings.topics,
        partitions=args.partitions or settings.partitions,
        replication_factor=rf,
        min_insync_replicas=min_isr,
        max_credential_lifetime=lifetime,
        margin=margin,
        receipts_retention=parse_duration(args.receipts_retention)
        if args.receipts_retention
        else settings.receipts_retention,
        timeout=settings.connect_timeout,
        alter_retention=args.alter_retention,
        kafka_options=settings.kafka_security.to_kafka_python(),
    )
    if args.json:
        print_json({"ok": report.ok, "topics": _report_json(report)})
    else:
        covers = (
            f"credential lifetime {human_duration(_ms(lifetime))} "
            f"+ margin {human_duration(_ms(margin))}"
        )
        for t in report.topics:
            print(_topic_line(t, covers if t.role != "receipts" else None))
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    if args.strict and not report.ok:
        raise ConfigError(f"{len(report.warnings)} topic setting(s) need attention (see above)")
    return 0
