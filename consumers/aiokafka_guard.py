"""Keep aiokafka (faust's Kafka client) going past a record it cannot parse, and quiet.

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
faust engine installs it, and ``tests/consumers`` exercises it with a record
written by kcat.

:func:`quiet_logs` keeps faust's stack to warnings and errors unless the process
logs at DEBUG, and demotes the lines it logs at ERROR or WARNING for normal events
of a new worker (a coordinator not elected yet, a first rebalance) to DEBUG.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Skipped", "install", "quiet_logs", "remove"]

log = logging.getLogger(__name__)

Skipped = tuple[str, int, int, str]
"""(topic, partition, offset, error) of a record the client could not parse."""

_listeners: list[Callable[[Skipped], None]] = []
_lock = threading.Lock()
_installed = False


def remove(listener: Callable[[Skipped], None]) -> None:
    """Stop telling ``listener`` (the wrapper stays installed for the process)."""
    with _lock, contextlib.suppress(ValueError):
        _listeners.remove(listener)


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


# ------------------------------------------------------------------ quiet logs

# (logger, message start): lines faust's stack logs above their weight while a worker
# starts or rebalances normally. Demoted to DEBUG (shown only when the root logger is).
_TRANSIENT: tuple[tuple[str, str], ...] = (
    # A new group's coordinator is not elected yet: aiokafka retries by itself.
    ("aiokafka.consumer.group_coordinator", "Group Coordinator Request failed"),
    # faust's sensors had no state for the first rebalance of a fresh app.
    ("faust.app.base", "[^-App]: Missing sensor state for rebalance"),
)


class _DemoteTransient(logging.Filter):
    def __init__(self, prefix: str, retriable_only: bool) -> None:
        super().__init__()
        self.prefix = prefix
        self.retriable_only = retriable_only

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        if self.retriable_only:
            args = record.args if isinstance(record.args, tuple) else ()
            if not any(getattr(a, "retriable", False) for a in args):
                return True  # a fatal error stays an error
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def quiet_logs() -> None:
    """Quiet faust, mode and aiokafka unless the root logger is at DEBUG (idempotent).

    Their INFO chatter (service start/stop trees, assignment tables) is hidden, their
    warnings and errors stay, except the transient lines of :data:`_TRANSIENT`, which
    become DEBUG. The process's own handler formats everything (faust never configures
    logging here), so nothing writes terminal colour codes into a pipe.
    """
    verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
    with _lock:
        for name in ("faust", "mode", "aiokafka"):
            logger = logging.getLogger(name)
            if not verbose and logger.level == logging.NOTSET:
                logger.setLevel(logging.WARNING)
        for name, prefix in _TRANSIENT:
            logger = logging.getLogger(name)
            if not any(isinstance(f, _DemoteTransient) for f in logger.filters):
                logger.addFilter(_DemoteTransient(prefix, name.startswith("aiokafka")))
