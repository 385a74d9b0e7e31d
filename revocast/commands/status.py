"""``revocast status EVENT_ID``: which services applied an event, and when (from receipts)."""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import asdict
from datetime import UTC, datetime

from producer.exceptions import NotInForceError
from producer.tracker import EventStatus, ReceiptTracker
from revocast.argtypes import seconds_arg, services_arg, uuid_arg
from revocast.commands import Subparsers
from revocast.deadletters import DeadLetter, find_dead_letters, summary
from revocast.options import print_json, producer_settings

__all__ = ["register"]


def register(subparsers: Subparsers) -> None:
    status = subparsers.add_parser("status", help="which services applied an event, and when")
    status.add_argument("event_id", type=uuid_arg, metavar="EVENT_ID")
    status.add_argument(
        "--services",
        type=services_arg,
        metavar="SERVICES",
        help="services that must have applied it (default: $REVOCAST_EXPECTED_SERVICES)",
    )
    status.add_argument(
        "--wait", type=seconds_arg, metavar="S", help="wait up to S seconds for --services"
    )
    status.add_argument(
        "--timeout",
        type=seconds_arg,
        default=30.0,
        metavar="S",
        help="seconds to read the receipts topic (default 30)",
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=run)


def _status_lines(status: EventStatus, missing: list[str]) -> list[str]:
    lines = [
        f"{status.event_id} ({status.event_type}) published "
        f"{status.published_at.isoformat() if status.published_at else '?'}:"
    ]
    for name, svc in status.services.items():
        lines.append(f"  {name}: first {svc.first_ms:.1f} ms, last {svc.last_ms:.1f} ms")
        for inst in svc.instances:
            lines.append(
                f"    {inst.instance} [{inst.flavor}] applied {inst.applied_at.isoformat()} "
                f"(+{inst.latency_ms:.1f} ms)"
            )
    if missing:
        lines.append(f"  missing: {', '.join(missing)}")
    return lines


def run(args: argparse.Namespace) -> int:
    settings = producer_settings(args)
    expected = args.services if args.services is not None else settings.expected_services
    with ReceiptTracker(
        settings.bootstrap_servers,
        settings.topics,
        start="beginning",
        only=[args.event_id],
        connect_timeout=settings.connect_timeout,
        client_id=f"{settings.client_id}-status",
    ) as tracker:
        tracker.catch_up(timeout=args.timeout)
        if expected and args.wait:
            with contextlib.suppress(NotInForceError):  # reported below as missing
                tracker.wait_in_force(args.event_id, expected, timeout=args.wait)
        status = tracker.status(args.event_id)
    missing = status.missing(expected) if expected else []
    letters: list[DeadLetter] = []
    if not status.services:
        letters = find_dead_letters(
            settings.bootstrap_servers,
            settings.topics,
            since=datetime.now(UTC) - settings.events_retention,
            event_id=args.event_id,
            timeout=args.timeout,
        )
    if args.json:
        print_json(
            {
                "status": status.model_dump(mode="json"),
                "expected": expected,
                "missing": missing,
                "in_force": (not missing) if expected else None,
                "dead_letters": [asdict(letter) for letter in letters],
            }
        )
    elif status.services:
        print("\n".join(_status_lines(status, missing)))
    if not status.services:
        why = (
            summary(letters)
            if letters
            else "no receipts and no dead letters: an unknown event id, one older than the "
            "receipts topic keeps, or no service is consuming (revocast consume)"
        )
        raise NotInForceError(
            f"no service has applied {args.event_id}: {why}",
            event_id=args.event_id,
            missing=missing,
            status=status,
        )
    if missing:
        raise NotInForceError(
            f"revocation {args.event_id} is not in force in {', '.join(missing)}",
            event_id=args.event_id,
            missing=missing,
            status=status,
        )
    return 0
