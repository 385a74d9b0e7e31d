"""Argument types for the ``revocast`` parser: each one names what is wrong with a bad value.

Every value from the command line is bounded here (durations, seconds, counts, times with a
timezone, UUIDs), so a command never sees an unchecked string.
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime

from producer.settings import parse_duration

__all__ = [
    "duration_arg",
    "positive_int",
    "seconds_arg",
    "services_arg",
    "time_arg",
    "uuid_arg",
]


def duration_arg(text: str) -> float:
    """``3600``, ``15m``, ``24h``, ``7d`` -> seconds."""
    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0 and <= 86400 seconds")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1 and <= 1000000")
    return value


def time_arg(text: str) -> datetime:
    if text.strip().lower() == "now":
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-11-28T12:00:00Z) or 'now'"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no timezone: add Z or +hh:mm (times are compared across machines)"
        )
    return value


def services_arg(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one service (comma-separated)")
    return names


def uuid_arg(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an event id (a UUID)") from None
