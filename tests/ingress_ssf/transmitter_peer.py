"""A test peer: a small SSF 1.0 transmitter on loopback, written from the specification.

No open-source SSF transmitter installs from the package registries this project uses, so
the tests talk to this one. It serves what a receiver needs from a transmitter and nothing
more: configuration metadata (``/.well-known/ssf-configuration``), a JWKS, the stream
management API (configuration, status, verification; SSF 1.0 §8.1) and a poll endpoint
(RFC 8936). SETs it sends are signed by a :class:`TransmitterKey`; for push streams it
POSTs them to the receiver's ``endpoint_url`` with the stream's ``authorization_header``.

It is a test peer, not a product: one receiver, state in memory, bearer-token auth.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from producer.ingress.ssf.testing import TransmitterKey, make_set
from producer.ingress.ssf.vocabulary import STREAM_UPDATED, VERIFICATION
from tests.producer.producer_testkit import ApiServer

SUPPORTED = [
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked",
    "https://schemas.openid.net/secevent/caep/event-type/token-claims-change",
    "https://schemas.openid.net/secevent/caep/event-type/credential-change",
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled",
    VERIFICATION,
    STREAM_UPDATED,
]


class TransmitterPeer:
    """The transmitter's state (streams, queued SETs, acks seen) and its ASGI app."""

    def __init__(self, key: TransmitterKey, token: str, audience: str) -> None:
        self.key = key
        self.token = token
        self.audience = audience
        self.issuer = ""  # set once the server has a port
        self.streams: dict[str, dict[str, Any]] = {}
        self.status: dict[str, dict[str, Any]] = {}
        self.queue: dict[str, str] = {}  # jti -> SET, unacknowledged (poll)
        self.acked: list[str] = []
        self.set_errs: dict[str, dict[str, str]] = {}
        self.pushed: list[tuple[int, str]] = []  # (status, body) of each push
        self.poll_requests: list[dict[str, Any]] = []
        self.extra_keys: list[dict[str, Any]] = []  # published beside the signing key
        self.lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/.well-known/ssf-configuration", self.metadata, methods=["GET"]),
                Route("/jwks.json", self.jwks, methods=["GET"]),
                Route(
                    "/ssf/stream",
                    self.stream,
                    methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
                ),
                Route("/ssf/status", self.stream_status, methods=["GET", "POST"]),
                Route("/ssf/verify", self.verify, methods=["POST"]),
                Route("/ssf/poll/{stream_id:str}", self.poll, methods=["POST"]),
            ]
        )

    # -- helpers for tests

    def sign(self, events: dict[str, dict[str, Any]], sub_id: dict[str, Any], **kw: Any) -> str:
        claims = make_set(iss=self.issuer, aud=self.audience, events=events, sub_id=sub_id, **kw)
        return self.key.sign(claims)

    def emit(self, stream_id: str, token: str) -> None:
        """Deliver a SET on a stream: queue it (poll) or POST it (push)."""
        stream = self.streams[stream_id]
        jti = json.loads(_payload(token))["jti"]
        if stream["delivery"]["method"] == "urn:ietf:rfc:8936":
            with self.lock:
                self.queue[jti] = token
            return
        response = httpx.post(
            stream["delivery"]["endpoint_url"],
            content=token,
            headers={
                "Content-Type": "application/secevent+jwt",
                "Authorization": stream["delivery"]["authorization_header"],
            },
            timeout=30,
        )
        self.pushed.append((response.status_code, response.text))

    # -- the transmitter's endpoints

    def _poll_url(self, sid: str) -> str:
        return f"{self.issuer}/ssf/poll/{sid}"

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.token}"

    async def metadata(self, request: Request) -> Response:
        base = self.issuer
        return JSONResponse(
            {
                "spec_version": "1_0",
                "issuer": base,
                "jwks_uri": f"{base}/jwks.json",
                "delivery_methods_supported": ["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"],
                "configuration_endpoint": f"{base}/ssf/stream",
                "status_endpoint": f"{base}/ssf/status",
                "verification_endpoint": f"{base}/ssf/verify",
                "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6749"}],
                "default_subjects": "ALL",
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.public_jwk(), *self.extra_keys]})

    async def stream(self, request: Request) -> Response:
        if not self._authorized(request):
            return Response(status_code=401)
        if request.method == "GET":
            sid = request.query_params.get("stream_id")
            if sid is None:
                return JSONResponse(list(self.streams.values()))
            if sid not in self.streams:
                return Response(status_code=404)
            return JSONResponse(self.streams[sid])
        if request.method == "DELETE":
            sid = request.query_params.get("stream_id", "")
            if self.streams.pop(sid, None) is None:
                return Response(status_code=404)
            return Response(status_code=204)
        body = await request.json()
        if request.method == "POST":
            sid = uuid.uuid4().hex
            delivery = body.get("delivery") or {"method": "urn:ietf:rfc:8936"}
            if delivery["method"] == "urn:ietf:rfc:8936":
                delivery = {**delivery, "endpoint_url": self._poll_url(sid)}
            requested = body.get("events_requested", [])
            self.streams[sid] = {
                "stream_id": sid,
                "iss": self.issuer,
                "aud": self.audience,
                "delivery": delivery,
                "events_supported": SUPPORTED,
                "events_requested": requested,
                "events_delivered": [e for e in requested if e in SUPPORTED],
                "description": body.get("description"),
            }
            self.status[sid] = {"stream_id": sid, "status": "enabled"}
            return JSONResponse(self.streams[sid], 201)
        sid = body.get("stream_id")
        if sid not in self.streams:
            return Response(status_code=404)
        current = self.streams[sid]
        receiver_supplied = ("events_requested", "delivery", "description")
        if request.method == "PUT":
            for name in receiver_supplied:
                current.pop(name, None)
        for name in receiver_supplied:
            if name in body:
                current[name] = body[name]
        if current.get("delivery", {}).get("method") == "urn:ietf:rfc:8936":
            current["delivery"] = {**current["delivery"], "endpoint_url": self._poll_url(sid)}
        current["events_delivered"] = [
            e for e in current.get("events_requested", []) if e in SUPPORTED
        ]
        return JSONResponse(current)

    async def stream_status(self, request: Request) -> Response:
        if not self._authorized(request):
            return Response(status_code=401)
        if request.method == "GET":
            sid = request.query_params.get("stream_id", "")
            if sid not in self.status:
                return Response(status_code=404)
            return JSONResponse(self.status[sid])
        body = await request.json()
        sid = body.get("stream_id")
        if sid not in self.status or body.get("status") not in ("enabled", "paused", "disabled"):
            return Response(status_code=400)
        self.status[sid] = {k: body[k] for k in ("stream_id", "status", "reason") if k in body}
        return JSONResponse(self.status[sid])

    async def verify(self, request: Request) -> Response:
        if not self._authorized(request):
            return Response(status_code=401)
        body = await request.json()
        sid = body.get("stream_id")
        if sid not in self.streams:
            return Response(status_code=404)
        payload = {"state": body["state"]} if "state" in body else {}
        token = self.sign({VERIFICATION: payload}, {"format": "opaque", "id": sid})
        threading.Thread(target=self.emit, args=(sid, token), daemon=True).start()
        return Response(status_code=204)

    async def poll(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"err": "authentication_failed"}, 401)
        body = await request.json()
        with self.lock:
            self.poll_requests.append(body)
            for jti in body.get("ack", []):
                if self.queue.pop(jti, None) is not None:
                    self.acked.append(jti)
            for jti, err in body.get("setErrs", {}).items():
                if self.queue.pop(jti, None) is not None:
                    self.set_errs[jti] = err
            limit = int(body.get("maxEvents", 100))
            sets = dict(list(self.queue.items())[:limit])
            more = len(self.queue) > limit
        return JSONResponse({"sets": sets, "moreAvailable": more})


def _payload(token: str) -> bytes:
    import base64

    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class PeerServer(ApiServer):
    """The peer served by a real uvicorn on 127.0.0.1; its issuer is its own URL."""

    def __init__(self, peer: TransmitterPeer) -> None:
        super().__init__(peer.app)
        peer.issuer = self.url
        self.peer = peer
