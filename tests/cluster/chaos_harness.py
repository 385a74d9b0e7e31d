"""Publish through a fault and account for every event: what the chaos tests measure.

A :class:`ChaosRun` drives the real :class:`~producer.RevocationPublisher` (acks=all,
idempotent) from one thread at a steady pace while real
:class:`~consumers.RevocationConsumer` instances (one per service) apply what arrives.
It records, for every publish attempt, when it started, whether the broker acknowledged
it (and where) or it failed loudly, and when each service applied it. After the fault,
:meth:`ChaosRun.audit` replays the whole events topic into a fresh consumer: every
acknowledged event must be in it.

Figures (:class:`ChaosFigures`):

* ``lost``: acknowledged events missing from the replayed topic (must be 0);
* ``failed_loudly``: publishes that raised (the caller knew it was not published);
* ``in_force_again_s``: from the fault until the last revocation that took more than
  ``slow_s`` to be in force in every service was in force: after that moment every
  revocation is in force everywhere within ``slow_s``;
* ``worst_in_force_s``: the slowest publish-to-in-force-everywhere of the run.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from consumers import RevocationConsumer
from producer import RevocationPublisher
from schemas import (
    Envelope,
    KeySet,
    RevocastError,
    SessionRevoked,
    SigningKey,
    Subject,
    SubjectKind,
    TopicNames,
    in_seconds,
)


def report(request: pytest.FixtureRequest, line: str) -> None:
    """Print ``line`` to the terminal past output capture (the figures of a run)."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is None:  # -p no:capture
        print(line, flush=True)
        return
    with capture.global_and_fixture_disabled():
        print(f"\n[revocast] {line}", flush=True)


@dataclass
class Attempt:
    index: int
    event_id: uuid.UUID | None = None
    started: float = 0.0
    acked: float | None = None
    ended: float | None = None
    partition: int | None = None
    offset: int | None = None
    error: str | None = None


@dataclass
class ChaosFigures:
    scenario: str
    attempts: int
    acked: int
    lost: int
    failed_loudly: int
    failures: list[str]
    not_applied: dict[str, int]
    in_force_again_s: float
    worst_in_force_s: float
    worst_ack_s: float
    fault_s: float

    def line(self) -> str:
        return (
            f"{self.scenario}: {self.attempts} publishes, {self.acked} acknowledged, "
            f"lost {self.lost}, failed loudly {self.failed_loudly}, in force everywhere again "
            f"{self.in_force_again_s:.1f} s after the fault; slowest revocation in force "
            f"everywhere {self.worst_in_force_s:.1f} s after publishing, slowest "
            f"acknowledgement {self.worst_ack_s:.1f} s; the fault and its repair took "
            f"{self.fault_s:.1f} s)"
        )


@dataclass
class ChaosRun:
    bootstrap: str
    topics: TopicNames
    signing_key: SigningKey
    keys: KeySet
    services: tuple[str, ...] = ("orders", "billing")
    interval: float = 0.05
    delivery_timeout: float = 15.0
    kafka_options: dict[str, Any] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    not_applied: dict[str, int] = field(default_factory=dict)
    applied: dict[str, dict[uuid.UUID, float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _listener(self, service: str) -> Callable[[Envelope, int], None]:
        seen = self.applied.setdefault(service, {})

        def on_applied(envelope: Envelope, applied_ns: int) -> None:
            with self._lock:
                seen.setdefault(envelope.event_id, time.monotonic())

        return on_applied

    def consumer(self, service: str, **kwargs: Any) -> RevocationConsumer:
        return RevocationConsumer(
            self.bootstrap,
            self.topics,
            service,
            f"{service}-1",
            self.keys,
            on_applied=self._listener(service),
            kafka_options=self.kafka_options,
            **kwargs,
        )

    def publisher(self) -> RevocationPublisher:
        return RevocationPublisher(
            self.bootstrap,
            self.topics,
            self.signing_key,
            delivery_timeout=self.delivery_timeout,
            connect_timeout=10.0,
            kafka_options=self.kafka_options,
        )

    def _publish_loop(self, publisher: RevocationPublisher) -> None:
        i = 0
        while not self._stop.is_set():
            attempt = Attempt(index=i, started=time.monotonic())
            event = SessionRevoked(
                subject=Subject(id=f"user-{i}", kind=SubjectKind.HUMAN),
                session_id=f"session-{i}",
                expires_at=in_seconds(3600),
            )
            try:
                published = publisher.publish(event)
            except RevocastError as exc:
                attempt.error = f"{type(exc).__name__}: {exc}"
                attempt.ended = time.monotonic()
            else:
                attempt.acked = time.monotonic()
                attempt.event_id = published.event_id
                attempt.partition = published.partition
                attempt.offset = published.offset
            with self._lock:
                self.attempts.append(attempt)
            i += 1
            self._stop.wait(self.interval)

    @contextmanager
    def running(self) -> Iterator[ChaosRun]:
        """Consumers ready, the publisher publishing; stops both on exit."""
        with ExitStack() as stack:
            for service in self.services:
                consumer = self.consumer(service).start()
                stack.callback(consumer.stop)
                assert consumer.wait_ready(timeout=60), f"{service} did not become ready"
            publisher = stack.enter_context(self.publisher())
            thread = threading.Thread(target=self._publish_loop, args=(publisher,), daemon=True)
            thread.start()
            try:
                yield self
            finally:
                self._stop.set()
                thread.join(self.delivery_timeout + 10)
                # While the consumers still run: every acknowledged event must reach them.
                self.not_applied = self.wait_all_applied(timeout=60)

    def wait_all_applied(self, timeout: float) -> dict[str, int]:
        """Wait until every service applied every acknowledged event; returns what is missing."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                acked = {a.event_id for a in self.attempts if a.event_id is not None}
                missing = {s: len(acked - set(self.applied.get(s, {}))) for s in self.services}
            if not any(missing.values()) or time.monotonic() > deadline:
                return {s: n for s, n in missing.items() if n}
            time.sleep(0.2)

    def audit(self, timeout: float = 60.0) -> set[uuid.UUID]:
        """Every event id in the events topic, read from the start by a fresh consumer."""
        found: dict[uuid.UUID, float] = {}

        def on_applied(envelope: Envelope, applied_ns: int) -> None:
            found[envelope.event_id] = time.monotonic()

        audit = RevocationConsumer(
            self.bootstrap,
            self.topics,
            "audit",
            f"audit-{uuid.uuid4().hex[:6]}",
            self.keys,
            on_applied=on_applied,
            publish_receipts=False,
            kafka_options=self.kafka_options,
        ).start()
        try:
            assert audit.wait_ready(timeout=timeout), "the audit replay did not catch up"
        finally:
            audit.stop()
        return set(found)

    def figures(
        self, scenario: str, fault_at: float, fault_s: float, slow_s: float = 2.0
    ) -> ChaosFigures:
        in_topic = self.audit()
        acked = [a for a in self.attempts if a.event_id is not None]
        failed = [a for a in self.attempts if a.error is not None]
        lost = [a for a in acked if a.event_id not in in_topic]
        delays: list[tuple[float, float]] = []  # (in force at, publish-to-in-force)
        for a in acked:
            times = [self.applied.get(s, {}).get(a.event_id) for s in self.services]  # type: ignore[arg-type]
            if any(t is None for t in times):
                continue
            everywhere = max(t for t in times if t is not None)
            delays.append((everywhere, everywhere - a.started))
        slow = [at for at, delay in delays if delay > slow_s and at >= fault_at]
        # A failed publish leaves its revocation out of force until its caller retries.
        failed_at = [a.ended for a in failed if a.ended is not None and a.ended >= fault_at]
        last_bad = max([*slow, *failed_at], default=fault_at)
        return ChaosFigures(
            scenario=scenario,
            attempts=len(self.attempts),
            acked=len(acked),
            lost=len(lost),
            failed_loudly=len(failed),
            failures=sorted({(a.error or "")[:400] for a in failed}),
            not_applied=self.not_applied,
            in_force_again_s=max(0.0, last_bad - fault_at),
            worst_in_force_s=max((d for _, d in delays), default=0.0),
            worst_ack_s=max((a.acked - a.started for a in acked if a.acked), default=0.0),
            fault_s=fault_s,
        )
