"""Prometheus metrics of one consumer instance, and structured logging helpers.

Metric families are registered once per :class:`~prometheus_client.CollectorRegistry`
(default: the global one) and shared by every consumer in the process; each
consumer writes to its own ``service``/``instance`` children. Names:

=============================================== ========= =============================
name                                            type      labels (besides service, instance)
=============================================== ========= =============================
``revocast_consumer_events_applied_total``      counter   ``flavor``, ``type``
``revocast_consumer_dead_lettered_total``       counter   ``flavor``, ``reason``
``revocast_consumer_receipts_dropped_total``    counter   ``flavor``
``revocast_consumer_apply_latency_seconds``     histogram ``flavor`` (publish -> apply)
``revocast_consumer_partition_lag``             gauge     ``flavor``, ``partition``
``revocast_consumer_partition_staleness_seconds`` gauge   ``flavor``, ``partition``
``revocast_consumer_ready``                     gauge     ``flavor`` (0 when stuck)
=============================================== ========= =============================

The latency histogram only observes events applied after the consumer is ready:
replaying hours of retained history would otherwise swamp it with ages, not
propagation latencies.

Logs: :func:`log_extra` builds the ``extra=`` mapping used with stdlib logging,
and :class:`JsonFormatter` renders records (with those fields) as one JSON object
per line. Neither ever sees a token: callers pass ids and rules, never the
``Authorization`` header.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["LATENCY_BUCKETS", "ConsumerMetrics", "JsonFormatter", "log_extra"]

LATENCY_BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Publish-to-apply latency buckets, 0.1 ms to 10 s."""

_BASE = ("service", "instance", "flavor")


class _Families:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.applied = Counter(
            "revocast_consumer_events_applied",
            "Revocation events applied to the local view, by event type.",
            (*_BASE, "type"),
            registry=registry,
        )
        self.dead_lettered = Counter(
            "revocast_consumer_dead_lettered",
            "Records refused and sent to the dead-letter topic, by reason.",
            (*_BASE, "reason"),
            registry=registry,
        )
        self.receipts_dropped = Counter(
            "revocast_consumer_receipts_dropped",
            "Receipts not published (the queue was full or the broker refused them).",
            _BASE,
            registry=registry,
        )
        self.latency = Histogram(
            "revocast_consumer_apply_latency_seconds",
            "Time from publish (producer clock) to apply (consumer clock).",
            _BASE,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge(
            "revocast_consumer_partition_lag",
            "Records between this consumer's position and the high watermark.",
            (*_BASE, "partition"),
            registry=registry,
        )
        self.staleness = Gauge(
            "revocast_consumer_partition_staleness_seconds",
            "Age of the newest heartbeat or event applied from the partition.",
            (*_BASE, "partition"),
            registry=registry,
        )
        self.ready = Gauge(
            "revocast_consumer_ready",
            "1 once the consumer has replayed the history that existed at start.",
            _BASE,
            registry=registry,
        )


_families: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()
_families_lock = threading.Lock()


def _families_for(registry: CollectorRegistry) -> _Families:
    with _families_lock:
        found = _families.get(registry)
        if found is None:
            found = _families[registry] = _Families(registry)
        return found


class ConsumerMetrics:
    """The metric children of one consumer (``service``, ``instance``, ``flavor``)."""

    def __init__(
        self,
        service: str,
        instance: str,
        *,
        flavor: str = "kafka-python",
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.labels = (service, instance, flavor)
        self._f = _families_for(REGISTRY if registry is None else registry)
        self._applied: dict[str, Counter] = {}
        self._latency = self._f.latency.labels(*self.labels)
        self._ready = self._f.ready.labels(*self.labels)
        self._ready.set(0)

    def applied(self, event_type: str, latency_s: float | None) -> None:
        counter = self._applied.get(event_type)
        if counter is None:
            counter = self._applied[event_type] = self._f.applied.labels(*self.labels, event_type)
        counter.inc()
        if latency_s is not None:
            self._latency.observe(max(latency_s, 0.0))

    def dead_lettered(self, reason: str) -> None:
        self._f.dead_lettered.labels(*self.labels, reason).inc()

    def receipt_dropped(self) -> None:
        self._f.receipts_dropped.labels(*self.labels).inc()

    def set_ready(self, ready: bool) -> None:
        self._ready.set(1 if ready else 0)

    def track_ready(self, healthy: Callable[[], bool]) -> None:
        """The ready gauge computed at scrape time: 0 as soon as the consumer is stuck."""
        self._ready.set_function(lambda: 1.0 if healthy() else 0.0)

    def set_lag(self, partition: int, lag: int) -> None:
        self._f.lag.labels(*self.labels, str(partition)).set(lag)

    def track_staleness(self, partitions: Iterable[int], staleness: Callable[[int], float]) -> None:
        """Staleness gauges computed at scrape time (``-1`` while nothing was seen)."""
        for partition in partitions:

            def value(p: int = partition) -> float:
                age = staleness(p)
                return -1.0 if math.isinf(age) else age

            self._f.staleness.labels(*self.labels, str(partition)).set_function(value)


def log_extra(**fields: Any) -> dict[str, Any]:
    """``extra=`` for stdlib logging, namespaced so fields cannot clash with LogRecord's."""
    return {"revocast": fields}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the ``revocast`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "revocast", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)
