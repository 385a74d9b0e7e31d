"""Consumer engines: one module per Kafka client, each only *fetching* for the shared core.

An engine assigns itself every partition of the events topic (no consumer group,
nothing committed), seeks where it is told, and hands each record to
:meth:`consumers.core.ConsumerCore.handle`. It also carries the instance's
producer (watermarks, dead letters) and answers the few broker questions the
driver asks (partitions, end offsets, positions, the topic's id). Everything
that decides (decode, verify, apply, freshness, dead letters, watermarks) is
:mod:`consumers.core`; the loop that drives an engine is
:class:`consumers.consumer.RevocationConsumer`.

========================= ================================ ==========================
engine                    client                           install
========================= ================================ ==========================
``kafka-python``          kafka-python (pure Python)       always (the reference)
``confluent``             confluent-kafka (librdkafka, C)  ``pip install 'revocast[fast]'``
========================= ================================ ==========================

    make_engine("confluent", bootstrap_servers="kafka:9092", topics=TopicNames(), ...)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from schemas import ConfigError, TopicNames

if TYPE_CHECKING:
    from consumers.core import ConsumerCore, Delivered, Headers

__all__ = ["ENGINES", "Engine", "make_engine", "topic_id_text"]

ENGINES: tuple[str, ...] = ("kafka-python", "confluent")
"""Engine names, the reference first."""


class Engine(Protocol):
    """What :class:`~consumers.consumer.RevocationConsumer` needs from a Kafka client."""

    name: str
    failure_backoff_max: float

    def raw_of(self, record: Any) -> tuple[bytes | None, Headers | None]:
        """Key and headers of one of this client's records (read only to dead-letter it)."""
    """Longest pause after failed polls (0: the client paces its own reconnects)."""

    def open(self) -> None:
        """Build the clients; :class:`schemas.BrokerUnavailableError` when no broker answers."""

    def partitions(self) -> set[int]:
        """Partitions of the events topic (empty when it does not exist)."""

    def topic_id(self) -> str | None:
        """Kafka's id of the events topic (base64url), ``None`` when unknown."""

    def assign(self, offsets: Mapping[int, int | None]) -> dict[int, int]:
        """Assign exactly these partitions at these offsets (``None``: the earliest
        retained); returns the resolved next offset of each."""

    def add_partitions(self, offsets: Mapping[int, int | None]) -> dict[int, int]:
        """Assign more partitions, keeping the positions of those already assigned."""

    def end_offsets(self, partitions: Sequence[int], timeout: float) -> dict[int, int]:
        """End offsets from the broker now (ListOffsets); raises when it cannot answer."""

    def position(self, partition: int) -> int | None:
        """The client's next offset on ``partition``, when it knows one."""

    def poll(self, timeout: float, core: ConsumerCore) -> int:
        """Fetch for up to ``timeout`` seconds and hand every record to ``core``; returns
        how many records were handed over. Raises when the fetch itself failed."""

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        delivered: Delivered | None,
    ) -> None:
        """Produce one record (never blocking for long)."""

    def flush(self, timeout: float) -> None: ...

    def pause(self) -> None:
        """Stop fetching every partition (positions keep)."""

    def resume(self) -> None: ...

    def close(self) -> None: ...


def topic_id_text(raw: Any) -> str | None:
    """A topic id as Kafka prints it (base64url of its 16 bytes, no padding).

    kafka-python gives a :class:`uuid.UUID`, confluent-kafka a ``Uuid`` whose ``str``
    already is that text; the all-zero id means "unknown" in Kafka's protocol.
    """
    import base64
    import uuid

    if raw is None:
        return None
    if isinstance(raw, uuid.UUID):
        if raw.int == 0:
            return None
        return base64.urlsafe_b64encode(raw.bytes).rstrip(b"=").decode()
    text = str(raw)
    return None if not text or text == "AAAAAAAAAAAAAAAAAAAAAA" else text


def make_engine(
    name: str,
    *,
    bootstrap_servers: str | Sequence[str],
    topics: TopicNames,
    client_id: str,
    connect_timeout: float,
    kafka_options: Mapping[str, Any] | None = None,
    consumer_options: Mapping[str, Any] | None = None,
    producer_options: Mapping[str, Any] | None = None,
) -> Engine:
    """The engine called ``name`` (not yet open). Options are in that client's own
    dialect (kafka-python keyword arguments, or librdkafka configuration keys)."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "topics": topics,
        "client_id": client_id,
        "connect_timeout": connect_timeout,
        "kafka_options": dict(kafka_options or {}),
        "consumer_options": dict(consumer_options or {}),
        "producer_options": dict(producer_options or {}),
    }
    if name == "kafka-python":
        from consumers.engines.kafka_python import KafkaPythonEngine

        return KafkaPythonEngine(**kwargs)
    if name == "confluent":
        try:
            from consumers.engines.confluent import ConfluentEngine
        except ImportError as exc:
            raise ConfigError(
                f"engine 'confluent' needs confluent-kafka: pip install 'revocast[fast]' ({exc})"
            ) from None
        return ConfluentEngine(**kwargs)
    raise ConfigError(f"unknown consumer engine {name!r}: choose from {', '.join(ENGINES)}")
