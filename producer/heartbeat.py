"""Heartbeats: a signed "still here" into every partition of the events topic, every second.

A consumer knows how fresh its view of a partition is from the last record it read
there. On a quiet partition that would be stale forever, so :class:`HeartbeatEmitter`
writes a :class:`~schemas.Heartbeat` into *each* partition (explicit ``partition=``,
no key) every ``interval`` seconds, through the same signed, acks=all publisher as
revocations. A consumer that sees a heartbeat at offset N knows it has everything
published to that partition before it.

Guarantees:

* Each beat is acknowledged for every partition or logged as failed; a failed beat
  never stops the emitter (a transient broker outage shows as missed beats, which is
  exactly what consumers' freshness guards must notice).
* Beats follow a fixed schedule (``interval`` apart, measured on the monotonic
  clock); a beat slower than the interval skips ticks instead of bursting.
* :meth:`HeartbeatEmitter.stop` returns within its timeout; one beat in flight is
  bounded by the publisher's ``delivery_timeout``.

    with HeartbeatEmitter(publisher, interval=1.0):   # background thread
        ...
    HeartbeatEmitter(publisher).run(duration=10)       # in this thread, for 10 s
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from types import TracebackType
from typing import Self

from producer.publisher import Published, RevocationPublisher
from schemas import Envelope, Heartbeat, RevocastError

__all__ = ["HeartbeatEmitter"]

log = logging.getLogger(__name__)


class HeartbeatEmitter:
    """Write a heartbeat into every events partition every ``interval`` seconds."""

    def __init__(
        self,
        publisher: RevocationPublisher,
        *,
        interval: float = 1.0,
        emitter: str | None = None,
    ) -> None:
        if not 0 < interval <= 3600:
            raise ValueError(f"heartbeat interval must be in (0, 3600] s, got {interval}")
        self.publisher = publisher
        self.interval = interval
        self.emitter = emitter or f"{socket.gethostname()}:{os.getpid()}"
        self.beats = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_beat_ns: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> list[Published]:
        """One heartbeat into every partition, acknowledged; raises on failure."""
        partitions = self.publisher.partitions()
        envelopes = [
            Envelope.wrap(
                Heartbeat(partition=p, emitter=self.emitter), issuer=self.publisher.issuer
            )
            for p in partitions
        ]
        published = self.publisher.publish_many(envelopes, partitions=partitions)
        self.beats += 1
        self.last_beat_ns = time.time_ns()
        return published

    def run(self, duration: float | None = None) -> None:
        """Beat on schedule in this thread until :meth:`stop` or ``duration`` seconds."""
        self._stop.clear()
        self._loop(duration)

    def _loop(self, duration: float | None) -> None:
        begin = time.monotonic()
        end = begin + duration if duration is not None else None
        tick = 0
        while not self._stop.is_set():
            now = time.monotonic()
            if end is not None and now >= end:
                break
            try:
                self.beat()
                if self.last_error is not None:
                    log.info("heartbeats resumed after: %s", self.last_error)
                self.last_error = None
            except RevocastError as exc:
                self.failures += 1
                self.last_error = str(exc)
                log.warning("heartbeat failed (%d so far): %s", self.failures, exc)
            # Next tick on the fixed grid, skipping any we are already late for.
            elapsed = time.monotonic() - begin
            tick = max(tick + 1, int(elapsed / self.interval) + 1)
            wake = begin + tick * self.interval
            if end is not None:
                wake = min(wake, end)
            self._stop.wait(max(0.0, wake - time.monotonic()))

    def start(self) -> Self:
        """Run in a daemon thread."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, args=(None,), name="revocast-heartbeat", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("heartbeat thread still busy after %.1f s (a beat in flight)", timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
