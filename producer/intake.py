"""What the tracker reads, checked: receipts-topic records and dead letters turned into facts.

Every record on the receipts topic is outside input. :class:`RecordIntake` decides, for
each one, whether it is

* a **watermark** that counts: parsed, and with ``service_keys`` verified (JWS ``typ``
  ``revocast-watermark+jws``, a ``kid`` of the service JWKS), naming this events topic
  (and, when both are known, the same topic id: a watermark of a deleted and recreated
  topic speaks of other offsets); it goes to the :class:`~producer.fleet.Fleet`;
* a per-event **receipt** of an instance that predates watermarks: accepted only while
  no service keys are configured (receipts are never signed);
* anything else: **refused**, counted by reason in :attr:`RecordIntake.refused` and
  logged (the first ten of each reason, then every thousandth), never an error.

Dead letters (``revocast.dlq.*`` headers) say that an instance *refused* the record at
an offset: a watermark passing that offset does not mean the event was applied there,
so the fleet keeps the refusal and the event is not in force at that instance. A forged
dead letter can only make an event look not in force (fail closed), never the reverse.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from producer.fleet import Fleet
from schemas import InvalidEventError, KeySet, Receipt, TopicNames, Watermark
from schemas.signing import is_signed
from schemas.topics import DLQ_REASON_HEADER, DLQ_SERVICE_HEADER, DLQ_SOURCE_HEADER

__all__ = ["MAX_RECORD_BYTES", "RecordIntake", "normal_topic_id"]

log = logging.getLogger("producer.tracker")

MAX_RECORD_BYTES = 1_048_576
"""Largest receipts-topic record value read (a watermark is bounded to 1 MiB too)."""


def normal_topic_id(value: str | None) -> str | None:
    """A topic id in one spelling: kafka-python gives a UUID, librdkafka base64url."""
    if not value:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        pass
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        return value
    return str(uuid.UUID(bytes=raw)) if len(raw) == 16 else value


class RecordIntake:
    """Checks records and hands the facts on; see the module docstring. Not thread-safe."""

    def __init__(
        self,
        topics: TopicNames,
        fleet: Fleet,
        on_receipt: Callable[[Receipt], None],
        *,
        service_keys: KeySet | None = None,
        events_topic_id: str | None = None,
    ) -> None:
        self.topics = topics
        self.fleet = fleet
        self.on_receipt = on_receipt
        self.service_keys = service_keys
        self.events_topic_id = normal_topic_id(events_topic_id)
        self.refused: Counter[str] = Counter()
        self.invalid = 0

    def _refuse(self, reason: str, detail: str) -> None:
        self.refused[reason] += 1
        n = self.refused[reason]
        if n <= 10 or n % 1000 == 0:
            log.warning("refused a receipts-topic record (%s, %d so far): %s", reason, n, detail)

    def receipts_record(
        self,
        value: bytes | None,
        received_ns: int,
        sent_ns: int | None = None,
        *,
        fleet_only: bool = False,
    ) -> None:
        """One receipts-topic record. ``fleet_only``: from before the tracker's start point,
        read for presence only (receipts there are not indexed)."""
        data = value or b""
        if len(data) > MAX_RECORD_BYTES:
            self.invalid += 1
            self._refuse("too_large", f"{len(data)} bytes")
            return
        if is_signed(data):
            self._watermark(data, received_ns, sent_ns)
            return
        if self.service_keys is not None:
            self._refuse("unsigned", "service keys are configured; unsigned records never count")
            return
        try:
            raw: Any = json.loads(data)
        except (ValueError, RecursionError):
            raw = None
        if isinstance(raw, dict) and raw.get("type") == "watermark":
            self._watermark(data, received_ns, sent_ns)
            return
        if fleet_only:
            return
        try:
            receipt = Receipt.model_validate(raw)
        except ValidationError:
            self.invalid += 1
            self._refuse("invalid", "neither a receipt nor a watermark")
            return
        self.on_receipt(receipt)

    def _watermark(self, data: bytes, received_ns: int, sent_ns: int | None) -> None:
        keys = self.service_keys
        try:
            wm = Watermark.from_bytes(data, keys, require_signature=keys is not None)
        except InvalidEventError as exc:
            self.invalid += 1
            self._refuse(exc.reason, str(exc))
            return
        if wm.topic != self.topics.events:
            self._refuse("other_topic", f"{wm.service}/{wm.instance} reads {wm.topic!r}")
            return
        theirs, ours = normal_topic_id(wm.topic_id), self.events_topic_id
        if theirs is not None and ours is not None and theirs != ours:
            self._refuse(
                "other_topic_id",
                f"{wm.service}/{wm.instance} read an earlier {wm.topic} (id {theirs}, now {ours})",
            )
            return
        # Refusals first, in the same step: a watermark that passes a record this
        # instance dead-lettered must never make that record count as applied there.
        for partition, offsets in wm.refused.items():
            for offset in offsets:
                known = self.fleet.refusals(partition, offset).get((wm.service, wm.instance))
                # The dead letter itself names the precise reason; keep it when it came first.
                if known is None:
                    self.fleet.refuse(wm.service, wm.instance, partition, offset, "dead_lettered")
        self.fleet.add(wm, received_ns, sent_ns)

    def dead_letter(self, headers: Sequence[tuple[str, bytes | None]] | None) -> None:
        """One dead-letter record: which instance refused which events-topic offset, why."""
        found = {k: v for k, v in headers or () if isinstance(v, bytes)}
        source = found.get(DLQ_SOURCE_HEADER, b"").decode("utf-8", "replace")
        who = found.get(DLQ_SERVICE_HEADER, b"").decode("utf-8", "replace")
        reason = found.get(DLQ_REASON_HEADER, b"invalid").decode("utf-8", "replace")[:64]
        topic, _, rest = source.rpartition("/")
        topic, _, partition = topic.rpartition("/")
        service, _, instance = who.partition("/")
        if topic != self.topics.events or not (service and instance):
            return  # another topic's, or not ours to read
        try:
            self.fleet.refuse(service, instance, int(partition), int(rest), reason)
        except ValueError:
            return
