"""Poll delivery (RFC 8936): fetch SETs from the transmitter, acknowledge what was published.

Each poll request is ``POST <endpoint> {"maxEvents", "returnImmediately", "ack",
"setErrs"}`` with the transmitter's ``management_token`` as bearer token; the answer is
``{"sets": {jti: SET}, "moreAvailable"}``.

Guarantees:

* **Acknowledged only once published.** A SET's jti enters the pending ``ack`` set in Redis
  only after :meth:`SetReceiver.receive` returned, i.e. after Kafka acknowledged every
  revocation it maps to; a refused SET enters ``setErrs`` with its RFC 8935 ``err``.
* **Nothing lost across restarts.** Pending acks and errors live in Redis and are removed
  only once the transmitter answered the poll that carried them; a SET whose handling
  failed (broker or Redis down) is left unacknowledged, so the transmitter delivers it
  again, and the jti dedupe keeps a redelivered SET from being published twice.
* **Bounded backoff.** After a failure the loop waits ``poll_backoff_min`` doubling up to
  ``poll_backoff_max`` (with jitter), and resets after a successful poll. Every request
  takes at most ``poll_timeout`` (+ ``http_timeout``); the answer at most
  ``max_document_bytes``, and at most ``poll_max_events`` SETs are handled per answer.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx

from producer.ingress.ssf.exceptions import SetRejected, TransmitterUnavailableError, escape
from producer.ingress.ssf.keys import request_json
from producer.ingress.ssf.receiver import SetReceiver
from producer.ingress.ssf.settings import TransmitterConfig
from producer.ingress.ssf.streams import StreamClient
from schemas import InfrastructureError

__all__ = ["PollClient", "PollResult"]

log = logging.getLogger("producer.ingress.ssf")


@dataclass
class PollResult:
    """One poll round: what was sent back and what came in."""

    acked: list[str] = field(default_factory=list)
    errors_sent: list[str] = field(default_factory=list)
    received: int = 0
    applied: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    more_available: bool = False


class PollClient:
    """Polls one transmitter's stream; :meth:`run` loops until ``stop`` is set."""

    def __init__(
        self,
        receiver: SetReceiver,
        config: TransmitterConfig,
        *,
        http: httpx.Client | None = None,
    ) -> None:
        if config.delivery != "poll":
            raise ValueError(f"transmitter {config.name} is configured for push, not poll")
        self.receiver = receiver
        self.config = config
        settings = receiver.settings
        self.settings = settings
        self._own_http = http is None
        self.http = http or httpx.Client(timeout=settings.poll_timeout + settings.http_timeout)
        self._url: str | None = config.poll_url

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def endpoint(self) -> str:
        """The poll URL: configured, or the stream's ``delivery.endpoint_url``."""
        if self._url is None:
            with StreamClient(self.config, self.settings) as streams:
                url = streams.get().endpoint_url
            if url is None:
                raise TransmitterUnavailableError(
                    f"transmitter {self.config.name}: the stream has no poll endpoint_url"
                )
            self._url = url
        return self._url

    def poll_once(self) -> PollResult:
        """Send pending acks/errors, receive a batch, handle every SET in it."""
        name = self.config.name
        store = self.receiver.store
        acks, errs = store.pending(name)
        body: dict[str, Any] = {
            "maxEvents": self.settings.poll_max_events,
            "returnImmediately": self.settings.poll_return_immediately,
        }
        if acks:
            body["ack"] = acks
        if errs:
            body["setErrs"] = errs
        token = self.config.management_token
        _, answer = request_json(
            self.http,
            "POST",
            self.endpoint(),
            what=f"transmitter {name} poll",
            max_bytes=self.settings.max_document_bytes,
            token=token.get_secret_value() if token is not None else None,
            body=body,
        )
        store.delivered(name, acks, list(errs))
        store.touch(name, "last_poll_at")
        result = PollResult(acked=acks, errors_sent=list(errs))
        if not isinstance(answer, dict) or not isinstance(answer.get("sets", {}), dict):
            raise TransmitterUnavailableError(f"transmitter {name} poll answer has no sets object")
        sets: dict[str, Any] = answer.get("sets", {})
        result.more_available = answer.get("moreAvailable") is True
        for jti, token_value in list(sets.items())[: self.settings.poll_max_events]:
            result.received += 1
            key = jti if isinstance(jti, str) and 0 < len(jti) <= 256 else None
            if key is None or not isinstance(token_value, str):
                log.warning(
                    "poll from %s: entry %r is not jti -> SET; skipped", name, escape(jti, 64)
                )
                continue
            try:
                outcome = self.receiver.receive(name, token_value, via="poll")
                if outcome.jti != key:
                    raise SetRejected(
                        "invalid_request", "the SET's jti is not the key it was delivered under"
                    )
            except SetRejected as exc:
                store.add_err(name, key, exc.body())
                result.refused.append(key)
                continue
            store.add_ack(name, key)
            result.applied.append(key)
        if len(sets) > self.settings.poll_max_events:
            result.more_available = True  # the rest comes again: none of it was acknowledged
        return result

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; failures back off, never end the loop."""
        delay = self.settings.poll_backoff_min
        while not stop.is_set():
            try:
                result = self.poll_once()
            except Exception as exc:  # a long-running loop never dies silently: log, back off
                wait = min(delay, self.settings.poll_backoff_max) * random.uniform(0.8, 1.2)
                if not isinstance(exc, InfrastructureError):
                    log.exception("poll from %s failed unexpectedly", self.config.name)
                log.warning(
                    "poll from %s failed (%s); next try in %.1f s", self.config.name, exc, wait
                )
                stop.wait(wait)
                delay = min(delay * 2, self.settings.poll_backoff_max)
                continue
            delay = self.settings.poll_backoff_min
            idle = not (result.received or result.more_available or result.acked)
            if idle and self.settings.poll_return_immediately:
                stop.wait(self.settings.poll_backoff_min)
