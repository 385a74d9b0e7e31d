"""The SSF receiver's core, shared by push and poll: validate → dedupe → map → publish → mark.

:meth:`SetReceiver.receive` handles one SET from one transmitter and returns an
:class:`Outcome` only once every revocation it maps to was acknowledged by Kafka
(``RevocationPublisher.publish``: acks=all). So:

* **An acknowledgement to the transmitter (push 202, poll ``ack``) means published.**
  When the broker or Redis is unavailable, :class:`~schemas.InfrastructureError` propagates
  and the transmitter is told to retry (push 503) or the SET stays unacknowledged (poll).
* **A jti is accepted once.** It is marked in Redis after the publish was acknowledged; a
  SET with a marked jti is acknowledged again without publishing. Two copies racing
  through at the same moment may both publish: harmless, revocations are idempotent facts.
* **Refusals never publish and are logged with the reason**, the transmitter's name and the
  escaped jti when one was read; a token is never logged.
* **Ingress never applies anything itself**: it only publishes (DESIGN.md).

Stream status: a stream-updated event records enabled / paused / disabled with its reason
(``revocast ssf status``); while a stream is paused or disabled, revocations from that IdP
stop arriving, and the receiver says so in a WARNING. A SET that still arrives from a
stream marked paused is applied anyway (the enabled event may simply not have arrived yet):
a revocation from an authenticated transmitter is never dropped.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol

import httpx

from producer.ingress.ssf.exceptions import SetRejected, escape
from producer.ingress.ssf.keys import TransmitterKeys
from producer.ingress.ssf.mapping import Control, plan
from producer.ingress.ssf.settings import SsfSettings, TransmitterConfig
from producer.ingress.ssf.store import SsfStore
from producer.ingress.ssf.validation import SetValidator
from producer.ingress.ssf.vocabulary import Action
from producer.publisher import Published
from schemas import RevocationEvent

__all__ = ["EventPublisher", "Outcome", "SetReceiver"]

log = logging.getLogger("producer.ingress.ssf")

VERIFICATION_TTL = timedelta(hours=1)


class EventPublisher(Protocol):
    """What the receiver needs of a publisher (``RevocationPublisher`` is one)."""

    def publish(self, event: RevocationEvent) -> Published: ...


@dataclass
class Outcome:
    """What happened to one SET that was acknowledged."""

    transmitter: str
    jti: str
    status: Literal["applied", "duplicate", "acknowledged", "control"]
    received_at: datetime
    published: list[Published] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class SetReceiver:
    """Receives SETs for the configured transmitters (thread-safe; calls block)."""

    def __init__(
        self,
        settings: SsfSettings,
        store: SsfStore,
        get_publisher: Callable[[], EventPublisher],
        *,
        http: httpx.Client | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self._get_publisher = get_publisher
        self._own_http = http is None
        self.http = http or httpx.Client(timeout=settings.http_timeout)
        self.transmitters: dict[str, TransmitterConfig] = {
            t.name: t for t in settings.all_transmitters()
        }
        self._validators = {
            name: SetValidator(
                config,
                TransmitterKeys(
                    config,
                    self.http,
                    max_bytes=settings.max_document_bytes,
                    min_refresh=settings.jwks_min_refresh,
                    max_age=settings.jwks_max_age,
                ),
                max_set_bytes=settings.max_set_bytes,
            )
            for name, config in self.transmitters.items()
        }

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def receive(self, name: str, token: bytes | str, *, via: str = "push") -> Outcome:
        """Handle one SET from transmitter ``name``; see the module docstring."""
        config = self.transmitters.get(name)
        if config is None:
            raise SetRejected("access_denied", f"no transmitter named {escape(name, 64)!r}")
        jti: str | None = None
        try:
            if not config.enabled:
                raise SetRejected(
                    "access_denied", f"transmitter {name} is disabled in this receiver"
                )
            vset = self._validators[name].validate(token)
            jti = vset.jti
            if self.store.seen(name, jti):
                log.info(
                    "SET %s from %s via %s: duplicate jti, acknowledged again",
                    escape(jti),
                    name,
                    via,
                )
                return Outcome(name, jti, "duplicate", vset.received_at)
            result = plan(vset)
            for control in result.controls:
                self._control(config, control)
            publisher = self._get_publisher() if result.events else None
            published = [publisher.publish(e) for e in result.events] if publisher else []
            self.store.mark(name, jti, config.max_set_age + config.clock_skew)
            self.store.touch(name, "last_set_at")
        except SetRejected as exc:
            log.warning(
                "SET %s from %s via %s refused: %s: %s",
                escape(jti) if jti is not None else "(no jti read)",
                name,
                via,
                exc.err,
                exc.description,
            )
            raise
        status: Literal["applied", "acknowledged", "control"] = (
            "applied" if published else "control" if result.controls else "acknowledged"
        )
        for event, p in zip(result.events, published, strict=True):
            log.info(
                "SET %s from %s via %s: published %s %s for subject %s at %s/%d@%d",
                escape(jti),
                name,
                via,
                p.event_type,
                p.event_id,
                escape(event.subject.id),
                p.topic,
                p.partition,
                p.offset,
            )
        for note in result.notes:
            log.info("SET %s from %s via %s: %s", escape(jti), name, via, note)
        return Outcome(name, jti, status, vset.received_at, published, result.notes)

    def _control(self, config: TransmitterConfig, control: Control) -> None:
        name = config.name
        if config.stream_id is not None and control.stream_id not in (None, config.stream_id):
            raise SetRejected(
                "invalid_request",
                f"sub_id names stream {escape(control.stream_id)!r}, not {config.stream_id!r}",
            )
        if control.action is Action.VERIFY:
            state = control.payload.get("state")
            expected = self.store.verification_state(name)
            if expected is not None and state != expected:
                raise SetRejected(
                    "invalid_state", "the verification state is not the one requested"
                )
            self.store.verified(name)
            log.info(
                "stream of %s verified (%s)",
                name,
                "requested" if expected else "transmitter-initiated",
            )
            return
        status = control.payload.get("status")
        if status not in ("enabled", "paused", "disabled"):
            raise SetRejected(
                "invalid_request", "stream-updated status must be enabled, paused or disabled"
            )
        reason = control.payload.get("reason")
        reason_text = escape(reason, 200) if isinstance(reason, str) else None
        self.store.set_status(name, status, reason_text)
        if status == "enabled":
            log.info("stream of %s enabled by the transmitter", name)
        else:
            log.warning(
                "stream of %s %s by the transmitter (%s): revocations from this IdP stop "
                "arriving until it is enabled again",
                name,
                status,
                reason_text or "no reason given",
            )

    def new_verification_state(self, name: str) -> str:
        """A fresh ``state`` for a verification request, remembered for the answer."""
        state = secrets.token_urlsafe(24)
        self.store.expect_verification(name, state, VERIFICATION_TTL)
        return state
