"""``revocast topics ensure``: create missing topics with safe retention, check existing ones."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from producer.settings import parse_duration
from producer.topics import TopicsReport, ensure_topics
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
    ensure.add_argument("--max-credential-lifetime", type=duration_arg, metavar="DURATION")
    ensure.add_argument("--margin", type=duration_arg, metavar="DURATION")
    ensure.add_argument("--receipts-retention", type=duration_arg, metavar="DURATION")
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
            "min_insync_replicas": t.min_insync_replicas,
            "warnings": list(t.warnings),
        }
        for t in report.topics
    ]


def run(args: argparse.Namespace) -> int:
    settings = producer_settings(args)
    rf = args.replication_factor or settings.replication_factor
    min_isr = args.min_insync_replicas or min(settings.min_insync_replicas, rf)
    report = ensure_topics(
        settings.bootstrap_servers,
        settings.topics,
        partitions=args.partitions or settings.partitions,
        replication_factor=rf,
        min_insync_replicas=min_isr,
        max_credential_lifetime=parse_duration(args.max_credential_lifetime)
        if args.max_credential_lifetime
        else settings.max_credential_lifetime,
        margin=parse_duration(args.margin) if args.margin else settings.retention_margin,
        receipts_retention=parse_duration(args.receipts_retention)
        if args.receipts_retention
        else settings.receipts_retention,
        timeout=settings.connect_timeout,
    )
    if args.json:
        print_json({"ok": report.ok, "topics": _report_json(report)})
    else:
        for t in report.topics:
            retention = "forever" if t.retention_ms == -1 else f"{t.retention_ms} ms"
            print(
                f"{'created' if t.created else 'exists '} {t.name}: {t.partitions} partitions, "
                f"rf {t.replication_factor}, min ISR {t.min_insync_replicas}, retention {retention}"
            )
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    if args.strict and not report.ok:
        raise ConfigError(f"{len(report.warnings)} topic setting(s) need attention (see above)")
    return 0
