"""IdP requests in, revocations in force out: SCIM deprovisioning and SSF push, end to end.

Used by the demo (one of each) and the benchmark (p50/p99 over many). The endpoint is the
one ``revocast serve-api`` serves (:func:`producer.api.create_app` with the SCIM service
provider at ``/scim/v2`` and the SSF push endpoint at ``/ssf/v1/push/<name>``), run by
uvicorn on 127.0.0.1 in a thread of this process. The IdP side speaks plain HTTP as an IdP
does:

* **SCIM**: ``POST /Users`` (active), then ``PATCH /Users/{id}`` ``replace active false``
  (Okta's and Entra's deprovisioning call) -> one ``SubjectOffboarded`` for the user's
  ``externalId``;
* **SSF**: a CAEP ``session-revoked`` SET (``application/secevent+jwt``, signed by the
  transmitter's key, user and session named) -> one ``SessionRevoked``.

The latency measured is **from the moment the IdP's request leaves to the moment the last
service applied the revocation** (the services' own apply time, from their receipts). It
includes the HTTP exchange, validation, signing, Kafka's acknowledgement (the endpoint
answers only after it) and propagation. :class:`RecordingPublisher` is how a request is
tied to the event it caused: it is the endpoint's publisher and remembers what it published.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Self

import httpx

from producer import Published, RevocationPublisher
from producer.settings import ProducerSettings
from schemas import Envelope, Heartbeat, RevocationEvent, TopicNames

__all__ = [
    "IdpRequest",
    "IngressServer",
    "RecordingPublisher",
    "ScimIdp",
    "SsfTransmitter",
]

SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
SCIM_PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


class RecordingPublisher(RevocationPublisher):
    """A :class:`RevocationPublisher` that remembers every acknowledged event
    (:meth:`take` hands them over and forgets them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seen: list[Published] = []
        self._seen_lock = threading.Lock()

    def publish(
        self, event: RevocationEvent | Heartbeat | Envelope, *, partition: int | None = None
    ) -> Published:
        published = super().publish(event, partition=partition)
        if not isinstance(event, Heartbeat):
            with self._seen_lock:
                self._seen.append(published)
        return published

    def publish_many(
        self, events: Iterable[RevocationEvent | Heartbeat | Envelope], **kwargs: Any
    ) -> list[Published]:
        done = super().publish_many(events, **kwargs)
        with self._seen_lock:
            self._seen.extend(p for p in done if p.event_type != "heartbeat")
        return done

    def take(self) -> list[Published]:
        with self._seen_lock:
            out, self._seen = self._seen, []
        return out


class IngressServer:
    """``revocast serve-api``'s app with SCIM and SSF push mounted, on 127.0.0.1, in a thread.

        with IngressServer(bootstrap, topics, publisher, redis_url) as server:
            server.scim_url, server.push_url
    """

    def __init__(
        self,
        bootstrap: str,
        topics: TopicNames,
        publisher: RevocationPublisher,
        redis_url: str,
        *,
        issuer: str = "https://idp.bench.revocast",
    ) -> None:
        import uvicorn

        from producer.api import create_app
        from producer.ingress.scim import ScimClient, ScimSettings
        from producer.ingress.ssf import SsfSettings, TransmitterConfig
        from producer.ingress.ssf.testing import TransmitterKey

        prefix = topics.events.removesuffix(".revocast.events")
        key_prefix = f"bench-ingress-{uuid.uuid4().hex[:10]}"
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self.scim_token = secrets.token_urlsafe(32)
        self.push_token = secrets.token_urlsafe(32)
        self.issuer = issuer
        self.audience = "https://revocast.bench/ssf"
        self.transmitter_key = TransmitterKey.generate("ES256", kid="bench-idp-1")
        settings = ProducerSettings.load(bootstrap_servers=bootstrap, topic_prefix=prefix)
        scim = ScimSettings(clients=[ScimClient(name="idp", token=self.scim_token)],
                            redis_url=redis_url, key_prefix=f"{key_prefix}-scim")
        ssf = SsfSettings(
            transmitters=[TransmitterConfig.model_validate({
                "name": "idp", "issuer": issuer, "audience": [self.audience],
                "jwks": self.transmitter_key.jwks(), "push_token": self.push_token,
            })],
            redis_url=redis_url, key_prefix=f"{key_prefix}-ssf",
        )
        # Only the SCIM and SSF endpoints are used here: the API's own routes stay closed
        # (no API tokens), which create_app rightly warns about; not news in this process.
        api_log = logging.getLogger("producer.api")
        level = api_log.level
        api_log.setLevel(logging.ERROR)
        try:
            self.app = create_app(settings, publisher=publisher, warm_up=False, scim=scim,
                                  ssf=ssf)
        finally:
            api_log.setLevel(level)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.scim_url = f"{self.url}/scim/v2"
        self.push_url = f"{self.url}/ssf/v1/push/idp"
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", lifespan="on", access_log=False)
        )
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="revocast-bench-ingress", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"the ingress endpoint did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(15)
        with contextlib.suppress(OSError):
            self._sock.close()
        self._forget_keys()

    def _forget_keys(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        with contextlib.suppress(redis.RedisError):
            keys = list(client.scan_iter(match=f"{self.key_prefix}*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start:start + 1000])
        client.close()


@dataclass
class IdpRequest:
    """One request an IdP sent, and what came of it."""

    kind: str
    """``scim-deactivate`` or ``ssf-session-revoked``."""
    subject: str
    sent_ns: int
    answered_ns: int
    status: int
    published: list[Published]

    @property
    def answer_ms(self) -> float:
        return (self.answered_ns - self.sent_ns) / 1e6


class ScimIdp:
    """An IdP's SCIM client: provisions users, deactivates them (``PATCH active false``)."""

    def __init__(self, server: IngressServer, publisher: RecordingPublisher) -> None:
        self.publisher = publisher
        self.http = httpx.Client(
            base_url=server.scim_url, timeout=30,
            headers={"Authorization": f"Bearer {server.scim_token}",
                     "Content-Type": "application/scim+json"},
        )

    def close(self) -> None:
        self.http.close()

    def provision(self, external_id: str) -> str:
        """Create an active user whose ``externalId`` (the tokens' ``sub``) is given."""
        answer = self.http.post("/Users", json={
            "schemas": [SCIM_USER], "userName": f"{external_id}@bench.example",
            "externalId": external_id, "active": True,
        })
        if answer.status_code != 201:
            raise RuntimeError(f"SCIM POST /Users answered {answer.status_code}: "
                               f"{answer.text[:300]}")
        user_id: str = answer.json()["id"]
        return user_id

    def deactivate(self, user_id: str, external_id: str) -> IdpRequest:
        self.publisher.take()
        sent = time.time_ns()
        answer = self.http.patch(f"/Users/{user_id}", json={
            "schemas": [SCIM_PATCH],
            "Operations": [{"op": "replace", "value": {"active": False}}],
        })
        answered = time.time_ns()
        if answer.status_code not in (200, 204):
            raise RuntimeError(f"SCIM PATCH active=false answered {answer.status_code}: "
                               f"{answer.text[:300]}")
        return IdpRequest("scim-deactivate", external_id, sent, answered, answer.status_code,
                          self.publisher.take())


class SsfTransmitter:
    """A Shared Signals transmitter pushing CAEP session-revoked SETs (RFC 8935)."""

    def __init__(self, server: IngressServer, publisher: RecordingPublisher) -> None:
        self.server = server
        self.publisher = publisher
        self.http = httpx.Client(timeout=30, headers={
            "Authorization": f"Bearer {server.push_token}",
            "Content-Type": "application/secevent+jwt",
        })

    def close(self) -> None:
        self.http.close()

    def session_revoked(self, user: str, session_id: str) -> IdpRequest:
        from producer.ingress.ssf.testing import session_revoked_set

        token = session_revoked_set(self.server.transmitter_key, iss=self.server.issuer,
                                    aud=self.server.audience, user=user, session_id=session_id)
        self.publisher.take()
        sent = time.time_ns()
        answer = self.http.post(self.server.push_url, content=token)
        answered = time.time_ns()
        if answer.status_code != 202:
            raise RuntimeError(f"SSF push answered {answer.status_code}: {answer.text[:300]}")
        return IdpRequest("ssf-session-revoked", user, sent, answered, answer.status_code,
                          self.publisher.take())
