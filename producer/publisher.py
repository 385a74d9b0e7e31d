"""Publish signed revocations to Kafka, and say only what the broker acknowledged.

Guarantees:

* **Acknowledged or raised.** :meth:`RevocationPublisher.publish` returns a
  :class:`Published` (partition, offset) only after the broker acknowledged the
  event with ``acks=all`` (every in-sync replica has it). Otherwise it raises
  :class:`~schemas.PublishError` or :class:`~schemas.BrokerUnavailableError`
  within ``delivery_timeout`` (+1 s of slack): kafka-python's ``max_block_ms``,
  ``request_timeout_ms`` and ``delivery_timeout_ms`` are all derived from it, so
  nothing waits forever. Catch :class:`~schemas.InfrastructureError` for both.
* **No duplicates from retries, order per subject.** The producer is idempotent
  (``enable_idempotence=True``, at most 5 requests in flight, unlimited retries
  bounded by the delivery timeout), and the record key is the subject id, so one
  subject's events land in one partition in publish order.
* **Signed.** Every value is a compact JWS made with the current
  :class:`~schemas.SigningKey` (its ``kid`` in the header). :meth:`rotate_key`
  switches keys between two publishes; consumers trust old and new during the
  overlap. An unsigned publisher must be asked for explicitly.
* **Survives outages.** The same publisher works again once the broker is back:
  kafka-python 3.0.12 can leave an idempotent producer unable to send after a
  failed batch; :func:`_repair` re-initializes it, or it is replaced.

Not guaranteed: that an event which was *not* acknowledged is absent from the
topic. A timed-out record may still be written later. That is harmless:
revocations are idempotent facts, so publishing the same event again is always
safe, and the error says which events to republish.

    with RevocationPublisher("127.0.0.1:9092", TopicNames(), SigningKey.from_file(p)) as pub:
        published = pub.publish(SessionRevoked(subject=Subject(id="u-1", kind="human"),
                                               session_id="s-1", expires_at=in_seconds(3600)))
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from kafka import KafkaProducer
from kafka.errors import IllegalStateError, KafkaError, KafkaTimeoutError

from producer.batching import by_partition, records
from producer.exceptions import BulkPublishError
from producer.topics import admin_client, require_reachable, topic_partitions
from schemas import (
    BrokerUnavailableError,
    ConfigError,
    Envelope,
    Heartbeat,
    InfrastructureError,
    PublishError,
    RevocationEvent,
    SigningKey,
    TopicNames,
    encode,
)

if TYPE_CHECKING:
    from producer.settings import ProducerSettings
    from producer.tracker import EventStatus, InForce, ReceiptTracker

__all__ = ["FailedEvent", "Published", "Revocation", "RevocationPublisher"]

log = logging.getLogger(__name__)

_SLACK = 1.0  # seconds on top of delivery_timeout for the sender thread to report back
_CHUNK = 1024  # events signed before they are handed to the sender, in publish_many


@dataclass(frozen=True)
class Published:
    """An event the broker acknowledged (acks=all): where it is and when it was sent."""

    event_id: uuid.UUID
    event_type: str
    topic: str
    partition: int
    offset: int
    published_at_ns: int
    source: dict[str, str] | None = None
    """Where the event came from (its ``schemas.Source``, JSON-able), if it says."""

    @property
    def published_at(self) -> datetime:
        return datetime.fromtimestamp(self.published_at_ns / 1e9, tz=UTC)


@dataclass(frozen=True)
class FailedEvent:
    """One event of a ``publish_many`` batch the broker did not acknowledge, and why."""

    index: int
    event_id: uuid.UUID
    error: str


class Revocation:
    """A published revocation: ``event_id``, ``published``, and a way to wait for it.

    rev = publisher.revoke(event)
    rev.wait_in_force(timeout=5).latency_ms                # every live instance
    rev.wait_in_force(["api", "billing"], timeout=5).latency_ms
    """

    def __init__(self, published: Published, tracker: ReceiptTracker | None) -> None:
        self.published = published
        self._tracker = tracker

    @property
    def event_id(self) -> uuid.UUID:
        return self.published.event_id

    def __repr__(self) -> str:
        p = self.published
        return f"<Revocation {p.event_id} {p.event_type} @ {p.topic}/{p.partition}/{p.offset}>"

    def _require_tracker(self) -> ReceiptTracker:
        if self._tracker is None:
            raise ConfigError(
                "this publisher has no ReceiptTracker: pass tracker= to RevocationPublisher "
                "to wait for revocations to be in force"
            )
        return self._tracker

    def wait_in_force(
        self,
        services: Sequence[str] | None = None,
        *,
        timeout: float,
        min_instances: int = 1,
        silent_ok: bool = False,
    ) -> InForce:
        """Block until every instance of ``services`` (``None``: of every service in the
        fleet) applied it; see :meth:`producer.tracker.ReceiptTracker.wait_in_force`
        (raises :class:`~producer.exceptions.NotInForceError` naming the missing
        services and the silent instances)."""
        return self._require_tracker().wait_in_force(
            self.published,
            services,
            timeout=timeout,
            min_instances=min_instances,
            silent_ok=silent_ok,
        )

    def status(self) -> EventStatus:
        """Which services and instances applied it so far, and when."""
        return self._require_tracker().status(self.event_id)


def _repair(producer: KafkaProducer) -> bool:
    """Work around kafka-python 3.0.12 bugs that leave an idempotent producer unusable.

    Returns ``False`` when ``producer`` must be replaced. Two states, both reached
    after a batch that had been sent fails (a broker outage, a record the broker
    refuses), are handled here:

    * *Wedged*: the producer id is reset to "none" but the state stays READY, so the
      sender never asks for a new id and never sends again (every later publish times
      out). Putting the state back to UNINITIALIZED makes it request a fresh id, as
      the Java client does. Repaired in place.
    * *Fatal error* (e.g. after ``MessageSizeTooLarge``): every later batch is aborted
      with the old error. kafka-python's own remedy is a new producer: ``False``.

    This reads private attributes on purpose, checks them defensively, and does
    nothing to a healthy producer or to a kafka-python without these internals. The
    outage and refused-record tests fail if it stops working.
    """
    manager = getattr(producer, "_transaction_manager", None)
    if manager is None:
        return True
    try:
        from kafka.producer.transaction_manager import TransactionState

        with manager._lock:
            if manager.is_transactional():
                return True
            if manager.has_error():
                return False
            if not manager.has_producer_id() and manager._current_state == TransactionState.READY:
                manager._current_state = TransactionState.UNINITIALIZED
                log.warning("kafka-python left the producer without a producer id; re-initializing")
    except (AttributeError, ImportError):  # internals changed: nothing to repair
        return True
    return True


def _close_in_background(producer: KafkaProducer, timeout: float) -> None:
    """Close ``producer`` without blocking the caller.

    kafka-python's ``close`` raises (and closes nothing) when the flush times out, so
    it is retried in a daemon thread long enough for every batch to expire.
    """

    def close() -> None:
        try:
            producer.close(timeout=timeout)
        except KafkaError as exc:
            log.debug("closing a replaced producer: %s", exc)

    threading.Thread(target=close, name="revocast-producer-close", daemon=True).start()


def _describe(env: Envelope) -> str:
    return f"{env.event_id} ({env.event.type})"


class RevocationPublisher:
    """A signed, idempotent, acks=all Kafka producer for revocation events.

    Construction checks that the broker answers and that the events topic exists
    (it never auto-creates it with unsafe retention) within ``connect_timeout``; it
    raises a one-line :class:`~schemas.BrokerUnavailableError` or
    :class:`~schemas.ConfigError` otherwise.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: TopicNames,
        signer: SigningKey | None,
        *,
        issuer: str = "revocast",
        delivery_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        client_id: str = "revocast-producer",
        linger_ms: int = 0,
        batch_size: int = 65536,
        tracker: ReceiptTracker | None = None,
        allow_unsigned: bool = False,
        batch_records: bool = True,
        kafka_options: Mapping[str, Any] | None = None,
        max_lifetime: timedelta | None = None,
    ) -> None:
        if signer is None and not allow_unsigned:
            raise ConfigError(
                "a signing key is required (consumers reject unsigned events); pass "
                "allow_unsigned=True only to test that they do"
            )
        if delivery_timeout <= 0 or connect_timeout <= 0:
            raise ConfigError("delivery_timeout and connect_timeout must be positive")
        self.bootstrap = bootstrap
        self.topics = topics
        self.issuer = issuer
        self.delivery_timeout = delivery_timeout
        self.tracker = tracker
        self.batch_records = batch_records
        self.max_lifetime = max_lifetime
        """No event's ``expires_at`` lies further than this after its publish time: a
        longer one is capped with a warning (consumers cap alike; the topic retains this
        plus a margin, so restarted and long-running consumers hold the same facts)."""
        self._signer = signer
        self._lock = threading.Lock()

        # Security options (KafkaSecurity.to_kafka_python()) for every client built here.
        self._kafka_options = dict(kafka_options or {})
        with admin_client(
            bootstrap,
            timeout=connect_timeout,
            client_id=f"{client_id}-admin",
            kafka_options=self._kafka_options,
        ) as a:
            partitions = topic_partitions(a, topics.events)
        if partitions is None:
            raise ConfigError(
                f"events topic {topics.events!r} does not exist on Kafka at {bootstrap}: "
                "create it with `revocast topics ensure`"
            )

        delivery_ms = max(1000, int(delivery_timeout * 1000))
        self.connect_timeout = connect_timeout
        self._config: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            # Idempotence keeps order and drops duplicates with up to 5 requests in flight.
            "max_in_flight_requests_per_connection": 5,
            "retries": 2**31 - 1,  # bounded by delivery_timeout_ms, as the Java client does
            "retry_backoff_ms": 100,
            "reconnect_backoff_ms": 50,
            "reconnect_backoff_max_ms": 1000,
            "linger_ms": linger_ms,
            "batch_size": batch_size,
            "delivery_timeout_ms": delivery_ms,
            "request_timeout_ms": max(500, min(30000, delivery_ms - linger_ms)),
            "max_block_ms": delivery_ms,
            "bootstrap_timeout_ms": max(100, int(connect_timeout * 1000)),
            "allow_auto_create_topics": False,
            **self._kafka_options,
        }
        self._producer, self._partitions = self._connect()
        log.info(
            "publishing to %s (%d partitions) at %s, signing with kid %s",
            topics.events,
            len(self._partitions),
            bootstrap,
            signer.kid if signer else "(unsigned)",
        )

    def _connect(self) -> tuple[KafkaProducer, list[int]]:
        require_reachable(self.bootstrap, self.connect_timeout)
        try:
            producer = KafkaProducer(**self._config)
        except KafkaError as exc:
            raise BrokerUnavailableError(
                f"Kafka at {self.bootstrap} did not answer within {self.connect_timeout:g} s "
                f"({type(exc).__name__})"
            ) from None
        try:
            partitions = sorted(producer.partitions_for(self.topics.events))
        except KafkaError as exc:
            _close_in_background(producer, 0.0)
            raise BrokerUnavailableError(
                f"no metadata for {self.topics.events} from Kafka at {self.bootstrap}: {exc}"
            ) from None
        return producer, partitions

    def _current(self) -> KafkaProducer:
        """The producer to send with: repaired, or replaced, if kafka-python broke it.

        See :func:`_repair`. A replacement needs the broker; while it is down this
        raises :class:`~schemas.BrokerUnavailableError` (the next call tries again).
        """
        with self._lock:
            if not _repair(self._producer):
                fresh, partitions = self._connect()
                old, self._producer, self._partitions = self._producer, fresh, partitions
                _close_in_background(old, self.delivery_timeout + _SLACK)
                log.warning("replaced the Kafka producer after a fatal producer error")
            return self._producer

    @classmethod
    def from_settings(
        cls,
        settings: ProducerSettings,
        *,
        signer: SigningKey | None = None,
        tracker: ReceiptTracker | None = None,
    ) -> RevocationPublisher:
        """A publisher configured by ``settings`` (signing key from its file unless given)."""
        return cls(
            settings.bootstrap_servers,
            settings.topics,
            signer if signer is not None else settings.signing_key(),
            issuer=settings.issuer,
            delivery_timeout=settings.delivery_timeout,
            connect_timeout=settings.connect_timeout,
            client_id=settings.client_id,
            linger_ms=settings.linger_ms,
            batch_size=settings.batch_size,
            tracker=tracker,
            batch_records=settings.batch_records,
            kafka_options=settings.kafka_security.to_kafka_python(),
            max_lifetime=settings.max_credential_lifetime,
        )

    # -- keys

    @property
    def kid(self) -> str | None:
        """The ``kid`` new events are signed with (``None`` when unsigned)."""
        signer = self._signer
        return signer.kid if signer is not None else None

    def rotate_key(self, new_key: SigningKey) -> None:
        """Sign every later event with ``new_key``.

        Publish the new public key in the consumers' JWKS *before* rotating, and keep
        the old one there until the events it signed have expired from the topic.
        """
        with self._lock:
            old = self._signer
            self._signer = new_key
        log.info("signing key rotated: %s -> %s", old.kid if old else None, new_key.kid)

    # -- publishing

    def partitions(self) -> list[int]:
        """The events topic's partitions, from the producer's (refreshed) metadata."""
        try:
            found = self._current().partitions_for(self.topics.events)
        except KafkaError as exc:
            raise BrokerUnavailableError(
                f"no metadata for {self.topics.events} from Kafka at {self.bootstrap}: {exc}"
            ) from None
        if found:
            self._partitions = sorted(found)
        return list(self._partitions)

    def _envelope(self, event: RevocationEvent | Heartbeat | Envelope) -> Envelope:
        env = (
            event.restamped()
            if isinstance(event, Envelope)
            else Envelope.wrap(event, issuer=self.issuer)
        )
        if self.max_lifetime is None:
            return env
        capped = env.lifetime_capped(self.max_lifetime)
        if capped is not env:
            log.warning(
                "event %s: expires_at %s is more than the maximum credential lifetime (%s) "
                "away; published with expires_at %s",
                env.event_id,
                env.event.expires_at.isoformat(),  # type: ignore[union-attr]
                self.max_lifetime,
                capped.event.expires_at.isoformat(),  # type: ignore[union-attr]
            )
        return capped

    def _send(
        self,
        env: Envelope,
        partition: int | None,
        value: bytes | None = None,
        producer: KafkaProducer | None = None,
        *,
        batch: bool = False,
    ) -> Any:
        """Hand one record to the producer; returns kafka-python's future.

        A batch record (``batch``, ``env`` its first event) has no key: its events
        have several subjects, and its partition is always explicit.
        """
        if value is None:
            value = encode(env, self._signer)
        key = None if batch else env.partition_key
        try:
            return (producer or self._current()).send(
                self.topics.events, value=value, key=key, partition=partition
            )
        except KafkaTimeoutError:
            raise BrokerUnavailableError(
                f"Kafka at {self.bootstrap} did not answer within {self.delivery_timeout:g} s; "
                f"event {_describe(env)} was not published"
            ) from None
        except IllegalStateError:
            raise PublishError(
                f"publisher is closed; event {_describe(env)} was not published"
            ) from None
        except (KafkaError, ValueError) as exc:
            raise PublishError(f"event {_describe(env)} was not published: {exc}") from None

    def _failure(self, env: Envelope, exc: Exception) -> PublishError:
        _repair(self._producer)  # a failed batch may have wedged it; see _repair
        if isinstance(exc, KafkaTimeoutError):
            return PublishError(
                f"event {_describe(env)} was not acknowledged by Kafka at {self.bootstrap} within "
                f"{self.delivery_timeout:g} s (broker down or unreachable?); it is not published "
                "(republishing it is safe)"
            )
        return PublishError(
            f"event {_describe(env)} was rejected by Kafka at {self.bootstrap}: "
            f"{type(exc).__name__}: {exc}"
        )

    def _published(self, env: Envelope, meta: Any) -> Published:
        return Published(
            event_id=env.event_id,
            event_type=env.event.type,
            topic=str(meta.topic),
            partition=int(meta.partition),
            offset=int(meta.offset),
            published_at_ns=env.published_at_ns,
            source=_source(env),
        )

    def publish(
        self, event: RevocationEvent | Heartbeat | Envelope, *, partition: int | None = None
    ) -> Published:
        """Sign, send and wait for the broker's acknowledgement (acks=all).

        ``event`` is wrapped in a fresh :class:`~schemas.Envelope` (an envelope is
        restamped). ``partition`` overrides the key-based choice (heartbeats).
        """
        env = self._envelope(event)
        deadline = time.monotonic() + self.delivery_timeout + _SLACK
        future = self._send(env, partition)
        try:
            meta = future.get(timeout=max(0.05, deadline - time.monotonic()))
        except KafkaError as exc:
            raise self._failure(env, exc) from None
        published = self._published(env, meta)
        if self.tracker is not None:
            self.tracker.track(published)  # the tracker maps watermarks to this position
        return published

    def publish_many(
        self,
        events: Iterable[RevocationEvent | Heartbeat | Envelope],
        *,
        partitions: Sequence[int] | None = None,
    ) -> list[Published]:
        """Send every event, then wait for all acknowledgements; results in input order.

        Every event is validated (wrapped in an envelope) before anything is sent.
        With ``batch_records`` (the default) the events bound for one partition are
        packed, in input order, into signed batch records, bounded in events and bytes
        (one signature per record; :mod:`producer.batching`, :mod:`schemas.batch`); a
        partition that gets one event gets a single-event record. Each event's
        :class:`Published` names its record's partition and offset (shared by the
        events of one batch).

        Raises :class:`~producer.exceptions.BulkPublishError` (a ``PublishError``)
        naming every event that was not acknowledged (all the events of a refused
        record), with ``published`` and ``failed`` lists. When the broker stops
        answering while sending, the rest is not sent and is reported as failed.
        ``partitions``, when given, is an explicit partition per event.
        """
        items = list(events)
        if partitions is not None and len(partitions) != len(items):
            raise ValueError(
                f"{len(partitions)} partitions given for {len(items)} events: one per event"
            )
        envelopes = [self._envelope(event) for event in items]  # all valid before any is sent
        failed: list[FailedEvent] = []
        futures: list[tuple[list[int], Any]] = []
        send_error: Exception | None = None
        ready: list[tuple[int | None, list[int], bytes]] = []
        try:
            producer = self._current()

            def send_ready() -> None:
                for part, chunk, value in ready:
                    env = envelopes[chunk[0]]
                    sent = self._send(env, part, value, producer, batch=len(chunk) > 1)
                    futures.append((chunk, sent))
                ready.clear()

            # Sign about _CHUNK events, then send them: signing does not fight the
            # sender thread record by record (twice as fast), and stamps stay close.
            waiting = 0
            for part, indexes in self._groups(envelopes, partitions):
                for chunk, value in records(envelopes, indexes, self._signer):
                    ready.append((part, chunk, value))
                    waiting += len(chunk)
                    if waiting >= _CHUNK:
                        send_ready()
                        waiting = 0
            send_ready()
        except InfrastructureError as exc:  # broker down: do not block once per record
            send_error = exc
        if send_error is not None:
            sent = {i for chunk, _ in futures for i in chunk}
            failed.extend(
                FailedEvent(i, env.event_id, f"not sent: {send_error}")
                for i, env in enumerate(envelopes)
                if i not in sent
            )

        deadline = time.monotonic() + self.delivery_timeout + _SLACK
        results: dict[int, Published] = {}
        for indexes, future in futures:
            try:
                meta = future.get(timeout=max(0.01, deadline - time.monotonic()))
            except KafkaError as exc:
                for i in indexes:
                    error = str(self._failure(envelopes[i], exc))
                    failed.append(FailedEvent(i, envelopes[i].event_id, error))
                continue
            for i in indexes:
                results[i] = self._published(envelopes[i], meta)
        published = [results[i] for i in sorted(results)]
        if self.tracker is not None:
            for p in published:
                self.tracker.track(p)
        if failed:
            failed.sort(key=lambda f: f.index)
            first = failed[0]
            raise BulkPublishError(
                f"{len(failed)} of {len(envelopes)} events were not acknowledged by Kafka at "
                f"{self.bootstrap} (first: #{first.index} {first.event_id}: {first.error}); "
                f"{len(published)} were",
                published=published,
                failed=failed,
            )
        return published

    def _groups(
        self, envelopes: list[Envelope], partitions: Sequence[int] | None
    ) -> list[tuple[int | None, list[int]]]:
        """(partition, indexes of its events): one per event without batch records
        (partitioned by the producer), per partition with them (:mod:`producer.batching`)."""
        if not self.batch_records:
            return [
                (partitions[i] if partitions is not None else None, [i])
                for i in range(len(envelopes))
            ]
        available = self._partitions if partitions is not None else self.partitions()
        return list(by_partition(envelopes, partitions, available))

    def revoke(self, event: RevocationEvent) -> Revocation:
        """:meth:`publish`, returning a :class:`Revocation` handle to wait on."""
        return Revocation(self.publish(event), self.tracker)

    # -- lifecycle

    def close(self, timeout: float = 5.0) -> None:
        """Flush and close within ``timeout`` s (records still unsent are dropped)."""
        _repair(self._producer)
        try:
            self._producer.close(timeout=timeout)
        except KafkaError:  # kafka-python raises when the flush times out; finish in background
            _close_in_background(self._producer, self.delivery_timeout + _SLACK)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _source(env: Envelope) -> dict[str, str] | None:
    source = getattr(env.event, "source", None)
    if source is None:
        return None
    return {k: str(v) for k, v in source.model_dump(mode="json", exclude_none=True).items()}
