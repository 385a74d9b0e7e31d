"""Find the dead letters of one event: which services refused it, and why.

A revocation no service applied is usually one every service refused (signed with a key they
do not trust, say). The services put their copy of such a record on the dead-letter topic with
``revocast.dlq.*`` headers (:mod:`schemas.topics`); this module reads that topic back from a
point in time and returns the refusals of one event, matched by its source
(``topic/partition/offset``, exact) or by the event id in its unverified payload.

Bounded: it reads only records newer than ``since``, at most ``max_records`` of them, for at
most ``timeout`` seconds; a payload is parsed only to compare its id, never trusted.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from jwt.api_jws import PyJWS
from jwt.exceptions import PyJWTError
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from schemas import BrokerUnavailableError, TopicNames
from schemas.topics import (
    DLQ_ERROR_HEADER,
    DLQ_REASON_HEADER,
    DLQ_SERVICE_HEADER,
    DLQ_SOURCE_HEADER,
)

__all__ = ["DeadLetter", "find_dead_letters", "summary"]

_MAX_ID_PAYLOAD = 65536


@dataclass(frozen=True, slots=True)
class DeadLetter:
    refused_by: str
    """``service/instance`` that refused the record."""
    reason: str
    """The stable reason code (``unknown_key``, ``bad_signature`` ...)."""
    error: str
    source: str


def _event_id_of(value: bytes | None) -> str | None:
    """The ``event_id`` in a record's payload, without verifying anything."""
    if not value or len(value) > _MAX_ID_PAYLOAD:
        return None
    payload: bytes = value
    if value.count(b".") == 2 and not value.lstrip().startswith(b"{"):
        try:
            payload = PyJWS().decode_complete(value, options={"verify_signature": False})["payload"]
        except PyJWTError:
            return None
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    found = data.get("event_id") if isinstance(data, dict) else None
    return found if isinstance(found, str) else None


def find_dead_letters(
    bootstrap: str,
    topics: TopicNames,
    *,
    since: datetime,
    source: str | None = None,
    event_id: uuid.UUID | None = None,
    timeout: float = 10.0,
    max_records: int = 100_000,
) -> list[DeadLetter]:
    """Dead letters of the event at ``source`` or with ``event_id``, newest topic data only."""
    wanted_id = str(event_id) if event_id is not None else None
    deadline = time.monotonic() + timeout
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            client_id="revocast-dead-letters",
            request_timeout_ms=max(1000, int(timeout * 1000)),
            consumer_timeout_ms=200,
        )
    except KafkaError as exc:
        raise BrokerUnavailableError(f"cannot read {topics.dead_letter}: {exc}") from None
    found: list[DeadLetter] = []
    try:
        parts = consumer.partitions_for_topic(topics.dead_letter) or set()
        tps = [TopicPartition(topics.dead_letter, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        end = consumer.end_offsets(tps)
        starts = consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
        todo = {}
        for tp in tps:
            start = starts.get(tp)
            if start is None:  # nothing at or after `since` in this partition
                continue
            consumer.seek(tp, start.offset)
            if start.offset < end[tp]:
                todo[tp] = end[tp]
        seen = 0
        while todo and seen < max_records and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200, max_records=500).items():
                for record in records:
                    seen += 1
                    if record.offset + 1 >= todo.get(tp, 0):
                        todo.pop(tp, None)
                    headers = {k: v for k, v in record.headers or ()}
                    src = headers.get(DLQ_SOURCE_HEADER, b"").decode("utf-8", "replace")
                    if source is not None and src != source:
                        continue
                    if wanted_id is not None and _event_id_of(record.value) != wanted_id:
                        continue
                    found.append(
                        DeadLetter(
                            refused_by=headers.get(DLQ_SERVICE_HEADER, b"?").decode(
                                "utf-8", "replace"
                            ),
                            reason=headers.get(DLQ_REASON_HEADER, b"?").decode("utf-8", "replace"),
                            error=headers.get(DLQ_ERROR_HEADER, b"").decode("utf-8", "replace"),
                            source=src,
                        )
                    )
    except KafkaError as exc:
        raise BrokerUnavailableError(f"cannot read {topics.dead_letter}: {exc}") from None
    finally:
        consumer.close()
    return found


def summary(letters: list[DeadLetter]) -> str:
    """``dead-lettered by api/api-1, billing/b-1 (unknown_key: kid 'x' is not trusted)``."""
    by_reason: dict[tuple[str, str], list[str]] = {}
    for letter in letters:
        by_reason.setdefault((letter.reason, letter.error), []).append(letter.refused_by)
    parts = [
        f"dead-lettered by {', '.join(sorted(set(who)))} ({reason}: {error})"
        for (reason, error), who in by_reason.items()
    ]
    return "; ".join(parts)
