"""Topic names and dead-letter header names: part of the contract, no Kafka here."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEAD_LETTER_TOPIC",
    "DLQ_ERROR_HEADER",
    "DLQ_REASON_HEADER",
    "DLQ_SERVICE_HEADER",
    "DLQ_SOURCE_HEADER",
    "EVENTS_TOPIC",
    "RECEIPTS_TOPIC",
    "TopicNames",
]

EVENTS_TOPIC = "revocast.events"
RECEIPTS_TOPIC = "revocast.receipts"
DEAD_LETTER_TOPIC = "revocast.events.dlq"

# A dead-lettered record keeps the original key and value byte for byte; these
# headers say why it was refused and where it came from.
DLQ_REASON_HEADER = "revocast.dlq.reason"  # stable code, e.g. b"bad_signature"
DLQ_ERROR_HEADER = "revocast.dlq.error"  # the human-readable message
DLQ_SOURCE_HEADER = "revocast.dlq.source"  # b"topic/partition/offset"
DLQ_SERVICE_HEADER = "revocast.dlq.service"  # b"service/instance" that refused it


@dataclass(frozen=True)
class TopicNames:
    """The three topics one revocast deployment uses.

    ``TopicNames()`` is the production set; ``TopicNames.prefixed("t-abc")`` gives
    an isolated set, as tests and benchmark runs use.
    """

    events: str = EVENTS_TOPIC
    receipts: str = RECEIPTS_TOPIC
    dead_letter: str = DEAD_LETTER_TOPIC

    @classmethod
    def prefixed(cls, prefix: str) -> TopicNames:
        return cls(
            events=f"{prefix}.{EVENTS_TOPIC}",
            receipts=f"{prefix}.{RECEIPTS_TOPIC}",
            dead_letter=f"{prefix}.{DEAD_LETTER_TOPIC}",
        )
