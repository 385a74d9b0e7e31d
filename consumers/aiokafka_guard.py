"""Keep aiokafka (faust's Kafka client) going past a record it cannot parse.

aiokafka 0.14 decodes record header *names* as UTF-8 and checks batch CRCs while
it iterates a fetched partition. One record with an invalid header name (written
by any client, e.g. ``kcat -H $'x-\\xff=v'``) raises ``UnicodeDecodeError`` out of
the fetcher: faust's worker crashes, and crashes again on every restart for the
whole retention window, so one record stops revocation in every faust service.

:func:`install` wraps ``PartitionRecords.__next__`` so that such an error ends
the partition's records for this fetch one offset past the record that failed
(``next_fetch_offset`` is that record's offset: every record before it was handed
out), and reports ``(topic, partition, offset, error)`` to the listeners, which
dead-letter it. The next fetch starts after it. Records after the failing one in
the same batch are re-fetched and parsed again; if they fail too they are skipped
the same way, one offset at a time (bounded by the batch).

This replaces one method of a library class for the whole process: only the
faust worker process installs it, and ``tests/consumers`` exercises it with a
record written by kcat.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Skipped", "install"]

log = logging.getLogger(__name__)

Skipped = tuple[str, int, int, str]
"""(topic, partition, offset, error) of a record the client could not parse."""

_listeners: list[Callable[[Skipped], None]] = []
_lock = threading.Lock()
_installed = False


def install(listener: Callable[[Skipped], None]) -> None:
    """Wrap aiokafka's record iterator (once per process) and add ``listener``."""
    global _installed
    with _lock:
        _listeners.append(listener)
        if _installed:
            return
        from aiokafka.consumer.fetcher import PartitionRecords

        original: Callable[[Any], Any] = PartitionRecords.__next__

        def __next__(self: Any) -> Any:
            try:
                return original(self)
            except StopIteration:
                raise
            except Exception as exc:
                offset = int(self.next_fetch_offset)
                tp = self._tp
                self.next_fetch_offset = offset + 1
                self._records_iterator = None
                skipped: Skipped = (tp.topic, tp.partition, offset, f"{type(exc).__name__}: {exc}")
                log.warning("skipping unparseable record %s/%d/%d: %s", *skipped)
                for notify in list(_listeners):
                    try:
                        notify(skipped)
                    except Exception:
                        log.exception("unparseable-record listener failed")
                raise StopIteration from None

        PartitionRecords.__next__ = __next__
        _installed = True
