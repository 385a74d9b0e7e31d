"""Latency statistics: HdrHistogram in microseconds, summaries in milliseconds.

Every latency the harness reports goes through :class:`LatencyRecorder`: an
HdrHistogram (1 us .. 1 h, 3 significant digits, so a percentile is within 0.1 %
of the true value) plus the exact minimum and maximum, which HdrHistogram would
otherwise round to its bucket edge. Nothing here reads a clock.

"In force everywhere" for one event is the maximum, over the services that were
expected to apply it, of ``applied_at_ns - published_at_ns``; an event that some
service never acknowledged has no such latency and is counted as incomplete
instead of being dropped silently (see :func:`in_force_everywhere`).

    rec = LatencyRecorder()
    rec.record_ns(2_500_000)          # 2.5 ms
    rec.summary()["p50_ms"]           # 2.5
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = [
    "HIGHEST_US",
    "PERCENTILES",
    "InForceResult",
    "LatencyRecorder",
    "in_force_everywhere",
    "percentile_of_sorted",
    "summarize_values",
]

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: anything slower is clamped (and counted)
SIGNIFICANT_DIGITS = 3
PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)


def _pkey(p: float) -> str:
    """``50.0 -> "p50"``, ``99.9 -> "p999"``."""
    text = f"{p:g}".replace(".", "")
    return f"p{text}"


class LatencyRecorder:
    """An HdrHistogram of latencies (recorded in us) with exact extremes.

    Negative latencies (clock steps between publisher and consumer; on one host
    only an NTP slew could cause one) are recorded as 1 us and counted in
    ``clamped_low``; latencies above an hour as one hour, counted in
    ``clamped_high``.
    """

    __slots__ = ("_hist", "clamped_high", "clamped_low", "count", "max_ns", "min_ns", "sum_ns")

    def __init__(self) -> None:
        self._hist = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        self.count = 0
        self.sum_ns = 0
        self.min_ns: int | None = None
        self.max_ns: int | None = None
        self.clamped_low = 0
        self.clamped_high = 0

    def record_ns(self, latency_ns: int) -> None:
        us = latency_ns // 1000
        if us < LOWEST_US:
            if latency_ns < 0:
                self.clamped_low += 1
            us = LOWEST_US
        elif us > HIGHEST_US:
            self.clamped_high += 1
            us = HIGHEST_US
        self._hist.record_value(us)
        self.count += 1
        self.sum_ns += latency_ns
        if self.min_ns is None or latency_ns < self.min_ns:
            self.min_ns = latency_ns
        if self.max_ns is None or latency_ns > self.max_ns:
            self.max_ns = latency_ns

    def record_many_ns(self, values: Iterable[int]) -> None:
        for value in values:
            self.record_ns(int(value))

    def percentile_ms(self, percentile: float) -> float | None:
        if not self.count:
            return None
        return float(self._hist.get_value_at_percentile(percentile)) / 1000.0

    def summary(self) -> dict[str, Any]:
        """``count, mean_ms, min_ms, p50_ms, p90_ms, p99_ms, p999_ms, max_ms`` (None if empty)."""
        out: dict[str, Any] = {"count": self.count}
        if not self.count:
            out.update(dict.fromkeys(("mean_ms", "min_ms", "max_ms"), None))
            out.update({f"{_pkey(p)}_ms": None for p in PERCENTILES})
            return out
        if self.min_ns is None or self.max_ns is None:  # pragma: no cover - count > 0
            raise RuntimeError("recorder has a count but no extremes")
        out["mean_ms"] = round(self.sum_ns / self.count / 1e6, 4)
        out["min_ms"] = round(self.min_ns / 1e6, 4)
        for p in PERCENTILES:
            value = self.percentile_ms(p)
            # HdrHistogram reports the top of a bucket; never above the exact max.
            out[f"{_pkey(p)}_ms"] = round(min(value or 0.0, self.max_ns / 1e6), 4)
        out["max_ms"] = round(self.max_ns / 1e6, 4)
        if self.clamped_low or self.clamped_high:
            out["clamped"] = {"below_1us": self.clamped_low, "above_1h": self.clamped_high}
        return out

    def encoded(self) -> str:
        """The histogram in HdrHistogram's compressed, base64 form (lossless to 3 digits)."""
        data = self._hist.encode()
        return data.decode() if isinstance(data, bytes) else str(data)

    @staticmethod
    def decode_histogram(text: str) -> HdrHistogram:
        return HdrHistogram.decode(text.encode())

    def cdf_ms(self) -> tuple[list[float], list[float]]:
        """``(latency_ms, cumulative fraction)`` at every recorded bucket, for plots."""
        xs: list[float] = []
        ys: list[float] = []
        if not self.count:
            return xs, ys
        seen = 0
        for item in self._hist.get_recorded_iterator():
            seen += item.count_at_value_iterated_to
            xs.append(item.value_iterated_to / 1000.0)
            ys.append(seen / self.count)
        return xs, ys


def summarize_values(values_ns: Iterable[int]) -> dict[str, Any]:
    """:meth:`LatencyRecorder.summary` of a plain iterable of nanosecond latencies."""
    rec = LatencyRecorder()
    rec.record_many_ns(values_ns)
    return rec.summary()


@dataclass
class InForceResult:
    """What the receipts of one measured step say."""

    everywhere: LatencyRecorder = field(default_factory=LatencyRecorder)
    per_service: dict[str, LatencyRecorder] = field(default_factory=dict)
    everywhere_ns: list[int] = field(default_factory=list)
    """Raw "in force everywhere" latencies (kept for CDF plots of a headline config)."""
    per_service_ns: dict[str, list[int]] = field(default_factory=dict)
    events: int = 0
    complete: int = 0
    incomplete: int = 0
    """Events that at least one expected service has not acknowledged."""
    missing_receipts: int = 0
    unexpected_receipts: int = 0
    """Receipts for these events from services that were not expected (ignored)."""


def in_force_everywhere(
    published: Mapping[Any, int],
    receipts: Iterable[tuple[Any, str, int]],
    services: Iterable[str],
    *,
    keep_raw: bool = False,
) -> InForceResult:
    """Join published events with receipts.

    ``published`` maps event id -> published_at_ns; ``receipts`` yields
    ``(event_id, service, latency_ns)``; ``services`` are those that must all
    apply an event for it to be in force everywhere. Receipts for other event
    ids are ignored; a second receipt from the same service for the same event
    keeps the first (earliest-read) one.
    """
    expected = list(services)
    wanted = set(expected)
    result = InForceResult(per_service={s: LatencyRecorder() for s in expected})
    if keep_raw:
        result.per_service_ns = {s: [] for s in expected}
    seen: dict[Any, dict[str, int]] = {}
    for event_id, service, latency_ns in receipts:
        if event_id not in published:
            continue
        if service not in wanted:
            result.unexpected_receipts += 1
            continue
        per_event = seen.setdefault(event_id, {})
        if service in per_event:
            continue
        per_event[service] = latency_ns
        result.per_service[service].record_ns(latency_ns)
        if keep_raw:
            result.per_service_ns[service].append(latency_ns)
    result.events = len(published)
    for event_id in published:
        per_event = seen.get(event_id, {})
        if len(per_event) == len(wanted):
            worst = max(per_event.values())
            result.everywhere.record_ns(worst)
            if keep_raw:
                result.everywhere_ns.append(worst)
            result.complete += 1
        else:
            result.incomplete += 1
            result.missing_receipts += len(wanted) - len(per_event)
    return result


def percentile_of_sorted(values: list[float], percentile: float) -> float:
    """Nearest-rank percentile of an already sorted list (as HdrHistogram defines it)."""
    if not values:
        raise ValueError("no values")
    rank = max(1, math.ceil(percentile / 100.0 * len(values)))
    return values[min(rank, len(values)) - 1]

