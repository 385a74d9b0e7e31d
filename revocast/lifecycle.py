"""What a running consumer is doing, told in one line per change (``revocast consume``).

A :class:`LifecycleWatcher` polls a consumer's public views (``ready``, ``stats()``,
``freshness()``, ``positions()``) a few times a second from its own thread and logs:

* ``assigned``: the partitions and how many retained records there are to replay;
* ``replaying``: progress every few seconds (a rich progress bar instead when the output is a
  terminal and the replay is long);
* ``ready``: caught up with the history that existed at start, with counts;
* ``lagging`` / ``caught up``: when the records still to read pass a threshold, and back;
* ``stale`` / ``fresh``: when privileged checks would be denied (no heartbeat, a silent
  partition), and when they would pass again;
* ``dead-lettered``: records refused since the last line, by count.

Only transitions are logged, so a healthy consumer prints a handful of lines and then nothing.
It never touches the consumer's state: reading these views is what any health check does.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from consumers.consumer import ConsumerStats
from consumers.freshness import FreshnessReport
from schemas import TopicNames

__all__ = ["LifecycleWatcher", "Watchable"]

log = logging.getLogger("revocast.consume")

_LAG_THRESHOLD = 1000  # records behind, after ready, before "lagging" is said
_PROGRESS_EVERY = 5.0  # seconds between replay progress lines (no terminal)
_BAR_MIN_RECORDS = 20_000  # a replay this long gets a progress bar on a terminal


class Watchable(Protocol):
    service: str
    instance: str
    topics: TopicNames

    @property
    def ready(self) -> bool: ...

    def stats(self) -> ConsumerStats: ...

    def freshness(self, now: float | None = None) -> FreshnessReport: ...

    def positions(self) -> dict[int, int]: ...


def _behind(report: FreshnessReport) -> int | None:
    lags = [p.lag for p in report.partitions]
    if any(lag is None for lag in lags):
        return None
    return sum(lag for lag in lags if lag is not None)


class LifecycleWatcher:
    """Log the lifecycle of ``consumer`` until :meth:`stop`.

    watcher = LifecycleWatcher(consumer, terminal=sys.stderr.isatty()).start()
    ...
    watcher.stop()
    """

    def __init__(
        self, consumer: Watchable, *, terminal: bool = False, interval: float = 0.25
    ) -> None:
        self.consumer = consumer
        self.terminal = terminal
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._bar: Any = None
        self._task: Any = None

    def start(self) -> LifecycleWatcher:
        self._thread = threading.Thread(target=self._run, name="revocast-lifecycle", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        self._close_bar()

    # ------------------------------------------------------------------ loop

    def _run(self) -> None:
        try:
            self._watch()
        except Exception as exc:  # a watcher must never take the service down
            log.warning("lifecycle watcher stopped: %s", exc)

    def _watch(self) -> None:
        c = self.consumer
        report = c.freshness()
        parts = len(report.partitions)
        behind = _behind(report)
        start_records = c.stats().records
        for _ in range(8):  # lags arrive with the first position refresh
            if behind is not None or c.ready or self._stop.wait(self.interval):
                break
            report = c.freshness()
            behind = _behind(report)
        total = behind if behind is not None else 0
        log.info(
            "assigned %d partition%s of %s; %s",
            parts,
            "" if parts == 1 else "s",
            c.topics.events,
            "caught up at once"
            if c.ready
            else f"replaying {total:,} retained records"
            if behind is not None
            else "replaying the retained records",
        )
        if not c.ready and self.terminal and total >= _BAR_MIN_RECORDS:
            try:
                self._open_bar(total)
            except ImportError:  # rich missing from a trimmed install: progress lines instead
                self._bar = self._task = None
        last_progress = time.monotonic()
        ready_said = False
        lagging = False
        stale_reason: str | None = None
        dead = c.stats().dead_lettered
        while not self._stop.wait(self.interval):
            stats = c.stats()
            now = time.monotonic()
            if not ready_said:
                if c.ready:
                    self._close_bar()
                    ready_said = True
                    report = c.freshness()
                    log.info(
                        "ready in %.1f s: %s records read, %s applied, %s dead-lettered",
                        now - self._started,
                        f"{stats.records:,}",
                        f"{stats.applied:,}",
                        f"{stats.dead_lettered:,}",
                    )
                    stale_reason = None
                else:
                    done = stats.records - start_records
                    if not total:  # lags were not known at assignment: learn the total now
                        later = _behind(c.freshness())
                        total = done + later if later is not None else 0
                    if self._task is not None:
                        self._bar.update(self._task, completed=min(done, total))
                    elif now - last_progress >= _PROGRESS_EVERY:
                        last_progress = now
                        rate = done / max(now - self._started, 1e-3)
                        of = f" of {total:,} ({100 * done / total:.0f}%)" if total else ""
                        log.info("replaying: %s records%s, %s/s", f"{done:,}", of, f"{rate:,.0f}")
                    continue
            if stats.dead_lettered > dead:
                log.warning(
                    "dead-lettered %d record%s (refused: see the dead-letter topic)",
                    stats.dead_lettered - dead,
                    "" if stats.dead_lettered - dead == 1 else "s",
                )
                dead = stats.dead_lettered
            report = c.freshness()
            behind = _behind(report) or 0
            if not lagging and behind >= _LAG_THRESHOLD:
                lagging = True
                log.warning("lagging: %s records behind the high watermark", f"{behind:,}")
            elif lagging and behind < _LAG_THRESHOLD // 10:
                lagging = False
                log.info("caught up: %d records behind", behind)
            reason = report.reason
            if reason is not None and stale_reason is None:
                log.warning(
                    "stale: %s; privileged requests are refused (503) until a heartbeat "
                    "arrives (is `revocast heartbeat` running?)",
                    reason,
                )
            elif reason is None and stale_reason is not None:
                log.info("fresh: every partition heard from within %gs", report.max_staleness)
            stale_reason = reason

    # ------------------------------------------------------------------ bar

    def _open_bar(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            "replaying",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._bar.add_task("replay", total=total)
        self._bar.start()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
            self._task = None
