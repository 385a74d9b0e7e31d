"""Push delivery (RFC 8935): ``POST /ssf/v1/push/<transmitter name>``.

The request must carry ``Authorization: Bearer <push_token>`` (the transmitter's
``authorization_header`` in its stream configuration), ``Content-Type:
application/secevent+jwt`` and a body of at most ``max_set_bytes`` bytes: one SET.

Answers:

* **202** (empty body) once every revocation the SET maps to was acknowledged by Kafka, or
  the SET was a duplicate, a control event, or a type that is only logged;
* **400** ``{"err": ..., "description": ...}`` (RFC 8935 §2.3) for every refusal:
  ``authentication_failed`` (bearer token missing or wrong: checked first, in constant
  time, before the body is read), ``access_denied`` (transmitter disabled here),
  ``invalid_request`` (content type, size, not a SET, claims, subject, mapping),
  ``invalid_key``, ``invalid_issuer``, ``invalid_audience``, ``invalid_state``;
* **503** with ``Retry-After`` when Kafka, Redis or the transmitter's JWKS is unavailable:
  nothing was acknowledged, the transmitter retries.

:class:`SsfIngress` bundles the receiver, its Redis store and the routes for mounting in the
HTTP API (``producer.api``); :class:`PushServer` serves the endpoint alone with uvicorn on
loopback, for the demo and the benchmark.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from producer.ingress.ssf.exceptions import SetRejected
from producer.ingress.ssf.receiver import EventPublisher, SetReceiver
from producer.ingress.ssf.settings import SsfSettings
from producer.ingress.ssf.store import SsfStore
from schemas import InfrastructureError

__all__ = ["MEDIA_TYPE", "PushServer", "SsfIngress", "push_routes"]

log = logging.getLogger("producer.ingress.ssf")

MEDIA_TYPE = "application/secevent+jwt"


def _refused(exc: SetRejected) -> JSONResponse:
    return JSONResponse(exc.body(), 400)


def push_routes(receiver: SetReceiver) -> list[BaseRoute]:
    """The push route(s), to mount under ``/ssf``."""
    max_bytes = receiver.settings.max_set_bytes

    async def push(request: Request) -> Response:
        name = request.path_params["name"]
        config = receiver.transmitters.get(name)
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        expected = (
            config.push_token.get_secret_value().encode()
            if config is not None and config.push_token is not None
            else None
        )
        # compare_digest even when the transmitter is unknown: no timing hint either way
        ok = hmac.compare_digest(given.strip().encode(), expected or b"\x00" * 32)
        if config is None or expected is None or scheme.lower() != "bearer" or not ok:
            log.warning("push to %r refused: authentication_failed", name[:64])
            return _refused(
                SetRejected("authentication_failed", "the bearer token is missing or wrong")
            )
        if config.delivery != "push":
            return _refused(
                SetRejected("access_denied", f"transmitter {name} is configured for poll")
            )
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != MEDIA_TYPE:
            log.warning("push from %s refused: content type %r", name, media[:64])
            return _refused(
                SetRejected("invalid_request", f"Content-Type must be {MEDIA_TYPE} (RFC 8935 §2)")
            )
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
            log.warning("push from %s refused: body larger than %d bytes", name, max_bytes)
            return _refused(
                SetRejected("invalid_request", f"the SET is larger than {max_bytes} bytes")
            )
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > max_bytes:
                log.warning("push from %s refused: body larger than %d bytes", name, max_bytes)
                return _refused(
                    SetRejected("invalid_request", f"the SET is larger than {max_bytes} bytes")
                )
        try:
            await run_in_threadpool(receiver.receive, name, bytes(body), via="push")
        except SetRejected as exc:
            return _refused(exc)
        except InfrastructureError as exc:
            log.warning("push from %s not acknowledged (retry): %s", name, exc)
            return JSONResponse(
                {"error": "unavailable", "description": str(exc)[:300]},
                503,
                headers={"Retry-After": "5"},
            )
        return Response(status_code=202)

    return [Route("/v1/push/{name:str}", push, methods=["POST"], name="ssf_push")]


class SsfIngress:
    """The receiver, its Redis store and its routes; close it when the app stops.

    ingress = SsfIngress(ssf_settings, get_publisher=backend.get_publisher)
    app.routes.append(ingress.mount())   # POST /ssf/v1/push/<name>
    """

    def __init__(
        self,
        settings: SsfSettings,
        get_publisher: Callable[[], EventPublisher],
        *,
        store: SsfStore | None = None,
    ) -> None:
        self.settings = settings
        self._own_store = store is None
        self.store = store or SsfStore.from_url(settings.redis_url, settings.key_prefix)
        self.receiver = SetReceiver(settings, self.store, get_publisher)

    def mount(self, path: str = "/ssf") -> Mount:
        return Mount(path, routes=push_routes(self.receiver))

    def close(self) -> None:
        self.receiver.close()
        if self._own_store:
            self.store.close()


class PushServer:
    """The push endpoint alone, served by uvicorn on 127.0.0.1 in a thread.

        with PushServer(ssf_settings, publisher) as server:
            httpx.post(server.push_url("okta"), content=set_token, headers=...)

    ``port=0`` picks a free port; ``url`` and :meth:`push_url` say where it listens.
    """

    def __init__(
        self,
        settings: SsfSettings,
        publisher: EventPublisher,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        store: SsfStore | None = None,
    ) -> None:
        self.ingress = SsfIngress(settings, lambda: publisher, store=store)
        self.app = Starlette(routes=[self.ingress.mount()])
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name="revocast-ssf-push",
            daemon=True,
        )

    def push_url(self, name: str) -> str:
        return f"{self.url}/ssf/v1/push/{name}"

    def start(self, timeout: float = 30.0) -> PushServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the SSF push server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(15)
        with contextlib.suppress(OSError):
            self._sock.close()
        self.ingress.close()

    def __enter__(self) -> PushServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
