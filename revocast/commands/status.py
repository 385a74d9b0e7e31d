"""``revocast status [EVENT_ID]``: the fleet, and which instances applied an event, and when.

Without an event id it prints the fleet the watermarks describe: every instance of every
service, its engine, live or silent, ready, applied-through and lag per partition, last seen.
With one, it reads the receipts topic from its beginning and says which instances applied the
event (from watermarks beyond the event's offset, or per-event receipts) and which have not;
the event is found in the events topic when no receipt names its position. Exit 1 when it is
not in force in the expected services (``--services``, ``$REVOCAST_EXPECTED_SERVICES``, or
else every instance of the fleet), with the silent and pending instances named.
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from producer.exceptions import NotInForceError
from producer.fleet import FleetStatus
from producer.tracker import EventStatus, ReceiptTracker
from revocast.argtypes import seconds_arg, services_arg, uuid_arg
from revocast.commands import Subparsers
from revocast.deadletters import DeadLetter, find_dead_letters, summary
from revocast.options import print_json, producer_settings
from schemas import BrokerUnavailableError

__all__ = ["fleet_lines", "register"]


def register(subparsers: Subparsers) -> None:
    status = subparsers.add_parser(
        "status", help="the fleet of service instances; which applied an event, and when"
    )
    status.add_argument(
        "event_id", type=uuid_arg, metavar="EVENT_ID", nargs="?", help="an event (default: none)"
    )
    status.add_argument(
        "--services",
        type=services_arg,
        metavar="SERVICES",
        help="services that must have applied it (default: $REVOCAST_EXPECTED_SERVICES, "
        "else every instance of the fleet)",
    )
    status.add_argument(
        "--wait", type=seconds_arg, metavar="S", help="wait up to S seconds for it to be in force"
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


def fleet_lines(fleet: FleetStatus) -> list[str]:
    """The fleet as a table: one instance per line."""
    if not fleet.instances:
        return ["no service instance has sent a watermark recently"]
    header = ("SERVICE", "INSTANCE", "ENGINE", "STATE", "READY", "APPLIED THROUGH", "LAG", "SEEN")
    rows = [header]
    for i in fleet.instances:
        through = " ".join(f"{p}:{o}" for p, o in i.applied_through.items()) or "-"
        rows.append(
            (
                i.service,
                i.instance,
                i.engine,
                i.state,
                "yes" if i.ready else "no",
                through,
                "?" if i.total_lag is None else str(i.total_lag),
                f"{i.seen_ago_s:.1f} s ago",
            )
        )
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    if fleet.refused:
        refused = ", ".join(f"{n} {reason}" for reason, n in sorted(fleet.refused.items()))
        lines.append(f"refused receipts-topic records: {refused}")
    return lines


def _chain(source: dict[str, str]) -> str:
    """IdP -> request/SET -> this event, in one line: ``ssf https://idp.example SET
    jti-1 (txn t-9, event at 2026-...) received 2026-...``."""
    channel = source.get("channel", "?")
    parts = [channel, source.get("origin", "")]
    if source.get("ref"):
        parts.append(("SET " if channel == "ssf" else "request ") + source["ref"])
    extra = [f"{k} {source[k]}" for k in ("txn", "toe") if source.get(k)]
    if extra:
        parts.append(f"({', '.join(extra)})")
    if source.get("received_at"):
        parts.append(f"received {source['received_at']}")
    return " ".join(p for p in parts if p)


def _status_lines(status: EventStatus, missing: list[str]) -> list[str]:
    where = (
        f" at partition {status.partition} offset {status.offset}"
        if status.offset is not None
        else ""
    )
    lines = [
        f"{status.event_id} ({status.event_type}) published "
        f"{status.published_at.isoformat() if status.published_at else '?'}{where}:"
    ]
    if status.source:
        lines.append(f"  from: {_chain(status.source)}")
    for name, svc in status.services.items():
        lines.append(f"  {name}: first {svc.first_ms:.1f} ms, last {svc.last_ms:.1f} ms")
        for inst in svc.instances:
            lines.append(
                f"    {inst.instance} [{inst.flavor}] applied {inst.applied_at.isoformat()} "
                f"(+{inst.latency_ms:.1f} ms, {inst.via})"
            )
    for w in status.waiting:
        if w.refused:
            lines.append(f"  refused: {w.service}/{w.instance} ({w.refused})")
            continue
        seen = w.last_seen.isoformat() if w.last_seen else "?"
        lines.append(
            f"  not applied: {w.service}/{w.instance} [{w.engine}] {w.state}, applied through "
            f"{w.applied_through} on its partition, last seen {seen}"
        )
    if missing:
        lines.append(f"  missing: {', '.join(missing)}")
    return lines


def _fleet(args: argparse.Namespace) -> int:
    settings = producer_settings(args)
    tracker = ReceiptTracker.from_settings(settings, client_id=f"{settings.client_id}-status")
    tracker.fleet_window = settings.fleet_forget_after.total_seconds()  # silent ones too
    with tracker:
        tracker.catch_up(timeout=args.timeout)
        fleet = tracker.fleet_status()
    if args.json:
        print_json(fleet.model_dump(mode="json"))
    else:
        print("\n".join(fleet_lines(fleet)))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.event_id is None:
        return _fleet(args)
    settings = producer_settings(args)
    expected: list[str] | None = args.services or settings.expected_services or None
    tracker = ReceiptTracker.from_settings(
        settings, start="beginning", only=[args.event_id], client_id=f"{settings.client_id}-status"
    )
    tracker.locate_lookback = settings.events_retention
    with tracker:
        tracker.catch_up(timeout=args.timeout)
        with contextlib.suppress(BrokerUnavailableError):  # unknown position: said below
            tracker.locate(args.event_id, timeout=args.timeout)
        if args.wait:
            with contextlib.suppress(NotInForceError):  # reported below as missing
                tracker.wait_in_force(args.event_id, expected, timeout=args.wait)
        status = tracker.status(args.event_id)
        fleet = tracker.fleet_status()
    wanted = expected if expected is not None else fleet.services
    missing = status.missing(wanted) if wanted else []
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
        out: dict[str, Any] = {
            "status": status.model_dump(mode="json"),
            "expected": wanted,
            "missing": missing,
            "silent": status.silent,
            "in_force": (not missing) if wanted else None,
            "dead_letters": [asdict(letter) for letter in letters],
            "fleet": fleet.model_dump(mode="json"),
        }
        print_json(out)
    elif status.services or status.waiting:
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
            silent=status.silent,
            pending=status.pending,
        )
    if missing:
        silent = f" (silent: {', '.join(status.silent)})" if status.silent else ""
        raise NotInForceError(
            f"revocation {args.event_id} is not in force in {', '.join(missing)}{silent}",
            event_id=args.event_id,
            missing=missing,
            status=status,
            silent=status.silent,
            pending=status.pending,
        )
    return 0
