"""HTTP API for IAM systems: POST a revocation, GET whether it is in force.

Endpoints (all JSON):

* ``POST /v1/revocations/{session|token|subject|claims|credential}`` - scope
  ``revoke:<kind>`` or ``revoke:*``. 202 with ``event_id``, ``partition``,
  ``offset`` and ``status_url`` once the broker acknowledged the event (acks=all).
* ``GET /v1/revocations/{event_id}`` - scope ``status:read``. Which services and
  instances applied it, with latencies, which have not (silent ones named), and the
  fleet; ``?services=a,b&wait=5`` waits up to 5 s for every instance of those
  services (default: configured, else every instance of the fleet).
* ``GET /healthz`` - liveness, no authentication. ``GET /openapi.json`` - OpenAPI 3.1.

Guarantees:

* **202 means published.** A 202 is sent only after the broker acknowledged the
  event. When the broker is unavailable the answer is 503 with
  ``"published": false`` within the publisher's delivery timeout: nothing is
  claimed as published that was not acknowledged.
* **Authentication before anything else.** 401 (with ``WWW-Authenticate: Bearer``)
  when the bearer token is missing or unknown, 403 when it lacks the scope; the
  body is not parsed before that. Tokens are compared in constant time and never
  logged: logs name the token's ``name``.
* **Validation names the field.** A body that is not a valid request is a 422 whose
  ``field`` is the dotted path of the first offending field; no body, however
  large, deep or malformed, gives a 500 (:mod:`producer.bodies`: the size limit
  holds while streaming, 413 without reading the rest).
* **No internals in answers.** A 503 says the broker is unavailable, never its
  addresses nor the client library's message (those go to the log).

Response models and the OpenAPI document live in :mod:`producer.openapi`, body
reading in :mod:`producer.bodies`. Serve it with ``revocast serve-api`` or
``python -m producer.api`` (uvicorn).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import math
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from producer.bodies import MAX_BODY, BodyProblem, read_json_body
from producer.exceptions import NotInForceError
from producer.ingress.scim.settings import ScimSettings
from producer.ingress.ssf.settings import SsfSettings
from producer.openapi import (
    MAX_WAIT,
    ErrorResponse,
    PublishedResponse,
    StatusResponse,
    openapi_document,
)
from producer.publisher import Published, RevocationPublisher
from producer.requests import REQUEST_TYPES, parse_request
from producer.settings import REVOKE_SCOPES, STATUS_SCOPE, ApiToken, ProducerSettings
from producer.tracker import ReceiptTracker
from schemas import (
    ConfigError,
    InfrastructureError,
    SchemaViolationError,
    SigningKey,
)

__all__ = [
    "ErrorResponse",
    "PublishedResponse",
    "StatusResponse",
    "create_app",
    "main",
    "openapi_document",
    "serve",
]

log = logging.getLogger("producer.api")  # also when run as __main__

REALM = "revocast"
MAX_SERVICES = 100  # services a status request may name


# --------------------------------------------------------------------------- responses


def _error(
    status: int,
    error: str,
    message: str,
    *,
    field: str | None = None,
    published: bool | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=error, message=message, field=field, published=published)
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status, headers=headers)


# --------------------------------------------------------------------------- state


class _Backend:
    """The publisher and tracker, created on first need and re-created after failures."""

    def __init__(
        self,
        settings: ProducerSettings,
        signer: SigningKey | None,
        publisher: RevocationPublisher | None,
        tracker: ReceiptTracker | None,
    ) -> None:
        self.settings = settings
        self.signer = signer
        self.publisher = publisher
        self.tracker = tracker
        self._owned: list[RevocationPublisher | ReceiptTracker] = []
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def get_publisher(self) -> RevocationPublisher:
        with self._lock:
            if self.publisher is None:
                signer = self.signer if self.signer is not None else self.settings.signing_key()
                self.publisher = RevocationPublisher.from_settings(self.settings, signer=signer)
                self._owned.append(self.publisher)
            return self.publisher

    def get_tracker(self) -> ReceiptTracker:
        with self._lock:
            if self.tracker is None:
                s = self.settings
                # Service keys, fleet presence and Kafka security from the settings.
                tracker = ReceiptTracker.from_settings(
                    s, start=datetime.now(UTC) - s.status_lookback
                )
                tracker.start()
                try:
                    tracker.catch_up(timeout=s.connect_timeout)
                except InfrastructureError:
                    tracker.stop()
                    raise
                self.tracker = tracker
                self._owned.append(tracker)
            return self.tracker

    def warm_up(self) -> None:
        """Connect eagerly, but let the API start (and answer 503) when Kafka is down."""
        for what, connect in (("publisher", self.get_publisher), ("tracker", self.get_tracker)):
            try:
                connect()
            except InfrastructureError as exc:
                self.last_error = str(exc)
                log.warning("%s not connected yet (will retry on demand): %s", what, exc)

    def close(self) -> None:
        for owned in reversed(self._owned):
            try:
                if isinstance(owned, RevocationPublisher):
                    owned.close(timeout=2.0)
                else:
                    owned.stop(timeout=2.0)
            except Exception:  # shutting down: report, never raise
                log.exception("closing %r", owned)
        self._owned.clear()


# --------------------------------------------------------------------------- auth


class _Auth:
    def __init__(self, tokens: list[ApiToken]) -> None:
        self._tokens = [(t.token.get_secret_value().encode(), t) for t in tokens]

    def check(self, request: Request, scope: str) -> ApiToken | Response:
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return _error(
                401,
                "unauthorized",
                "a bearer token is required (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
            )
        given = credentials.strip().encode()
        found: ApiToken | None = None
        for secret, token in self._tokens:  # compare with every token: constant time per token
            if hmac.compare_digest(secret, given):
                found = token
        if found is None:
            return _error(
                401,
                "unauthorized",
                "the bearer token is not valid",
                headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token"'},
            )
        if not found.allows(scope):
            return _error(
                403,
                "forbidden",
                f"token {found.name!r} lacks the scope {scope!r}",
                headers={
                    "WWW-Authenticate": (
                        f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'
                    )
                },
            )
        return found


# --------------------------------------------------------------------------- handlers


def _unavailable(exc: InfrastructureError, what: str) -> JSONResponse:
    # The detail names broker addresses and client internals: it goes to the log only.
    log.warning("%s: %s", what, exc)
    return _error(
        503,
        "broker_unavailable",
        f"{what}: the event broker is unavailable; retry later",
        published=False,
        headers={"Retry-After": "5"},
    )


def create_app(
    settings: ProducerSettings,
    *,
    signer: SigningKey | None = None,
    publisher: RevocationPublisher | None = None,
    tracker: ReceiptTracker | None = None,
    warm_up: bool = True,
    scim: ScimSettings | None = None,
    ssf: SsfSettings | None = None,
) -> Starlette:
    """The ASGI app. ``publisher``/``tracker`` are created from ``settings`` when not given
    (and then owned and closed by the app); ``signer`` overrides the key file. With ``scim``
    naming at least one SCIM client, the SCIM service provider is mounted at ``/scim/v2``
    (:mod:`producer.ingress.scim`), publishing through the same publisher. With ``ssf`` naming
    at least one transmitter, the SSF push endpoint is mounted at ``/ssf/v1/push/<name>``
    (:mod:`producer.ingress.ssf`), through the same publisher too."""
    tokens = settings.tokens()
    if not tokens:
        log.warning("no API tokens configured (REVOCAST_API_TOKENS): every request gets 401")
    if signer is None and publisher is None:
        signer = settings.signing_key()  # fail at start-up, not at the first revocation
    auth = _Auth(tokens)
    backend = _Backend(settings, signer, publisher, tracker)
    scim_routes: list[BaseRoute] = []
    scim_app = None
    if scim is not None and scim.all_clients():
        from producer.ingress.scim import create_scim_app

        scim_app = create_scim_app(
            scim,
            publisher=backend.get_publisher,
            credential_lifetime=settings.max_credential_lifetime,
        )
        scim_routes.append(Mount("/scim/v2", app=scim_app, name="scim"))
    ssf_ingress = None
    if ssf is not None and ssf.all_transmitters():
        from producer.ingress.ssf import SsfIngress

        ssf_ingress = SsfIngress(ssf, backend.get_publisher)
        scim_routes.append(ssf_ingress.mount("/ssf"))

    async def revoke(request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind not in REQUEST_TYPES:
            return _error(404, "not_found", f"unknown revocation kind {kind!r}")
        who = auth.check(request, REVOKE_SCOPES[kind])
        if isinstance(who, Response):
            return who
        data = await read_json_body(request, limit=MAX_BODY)
        if isinstance(data, BodyProblem):
            return _error(data.status, data.error, data.message, field=data.field)
        try:
            event = parse_request(kind, data).to_event(
                default_lifetime=settings.default_credential_lifetime,
                max_lifetime=settings.max_credential_lifetime,
            )
        except SchemaViolationError as exc:
            return _error(422, "invalid_request", str(exc), field=exc.field)
        try:
            pub = await run_in_threadpool(backend.get_publisher)
            published: Published = await run_in_threadpool(pub.publish, event)
        except InfrastructureError as exc:
            return _unavailable(exc, f"revocation from {who.name} not published")
        log.info(
            "published %s %s for %s (by %s) at %s/%d@%d",
            published.event_type,
            published.event_id,
            event.subject.id,
            who.name,
            published.topic,
            published.partition,
            published.offset,
        )
        body_out = PublishedResponse(
            event_id=published.event_id,
            type=published.event_type,
            topic=published.topic,
            partition=published.partition,
            offset=published.offset,
            published_at=published.published_at,
            status_url=str(request.url_for("status", event_id=str(published.event_id))),
        )
        return JSONResponse(body_out.model_dump(mode="json"), 202)

    async def status(request: Request) -> Response:
        who = auth.check(request, STATUS_SCOPE)
        if isinstance(who, Response):
            return who
        try:
            event_id = uuid.UUID(request.path_params["event_id"])
        except ValueError:
            return _error(422, "invalid_request", "event_id: not a UUID", field="event_id")
        raw_services = request.query_params.get("services")
        expected = (
            [s.strip() for s in raw_services.split(",") if s.strip()]
            if raw_services is not None
            else list(settings.expected_services)
        )
        if len(expected) > MAX_SERVICES or any(len(s) > 256 for s in expected):
            return _error(
                422,
                "invalid_request",
                f"services: at most {MAX_SERVICES} names of at most 256 characters",
                field="services",
            )
        try:
            wait = float(request.query_params.get("wait", "0"))
        except ValueError:
            return _error(422, "invalid_request", "wait: not a number", field="wait")
        if not math.isfinite(wait) or wait < 0:
            return _error(
                422, "invalid_request", f"wait: seconds from 0 to {MAX_WAIT:g}", field="wait"
            )
        wait = min(wait, MAX_WAIT)
        try:
            trk = await run_in_threadpool(backend.get_tracker)
        except InfrastructureError as exc:
            return _unavailable(exc, "receipts cannot be read")
        latency: float | None = None
        if wait > 0:  # named services, or every instance of the fleet
            try:
                in_force = await run_in_threadpool(
                    trk.wait_in_force, event_id, expected or None, timeout=wait
                )
                latency = in_force.latency_ms
            except NotInForceError:
                pass
        else:  # published elsewhere: find where, so watermarks can be compared with it
            with contextlib.suppress(InfrastructureError):
                await run_in_threadpool(
                    trk.locate, event_id, timeout=min(settings.connect_timeout, 3.0)
                )
        try:
            fleet = await run_in_threadpool(trk.fleet_status)
        except InfrastructureError:
            fleet = await run_in_threadpool(trk.fleet_status, lag=False)
        current = trk.status(event_id)
        wanted = expected or fleet.services
        missing = current.missing(wanted) if wanted else []
        if wanted and not missing and latency is None:
            latency = max(current.services[s].last_ms for s in wanted)
        out = StatusResponse(
            status=current,
            expected=wanted,
            missing=missing,
            silent=[s for s in current.silent if s.split("/", 1)[0] in wanted],
            in_force=(not missing) if wanted else None,
            latency_ms=latency,
            fleet=fleet,
        )
        return JSONResponse(out.model_dump(mode="json"))

    async def healthz(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "publisher": "connected" if backend.publisher is not None else "not connected",
                "tracker": "running"
                if backend.tracker is not None and backend.tracker.running
                else "not running",
            }
        )

    document = openapi_document()

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if warm_up:
            await run_in_threadpool(backend.warm_up)
        try:
            yield
        finally:
            if scim_app is not None:
                await scim_app.aclose()
            if ssf_ingress is not None:
                await run_in_threadpool(ssf_ingress.close)
            await run_in_threadpool(backend.close)

    app = Starlette(
        routes=[
            Route("/v1/revocations/{kind:str}", revoke, methods=["POST"], name="revoke"),
            Route("/v1/revocations/{event_id:str}", status, methods=["GET"], name="status"),
            Route("/healthz", healthz, methods=["GET"], name="healthz"),
            Route("/openapi.json", openapi, methods=["GET"], name="openapi"),
            *scim_routes,
        ],
        lifespan=lifespan,
    )
    app.state.backend = backend
    return app


# --------------------------------------------------------------------------- serving


def serve(
    settings: ProducerSettings,
    *,
    host: str | None = None,
    port: int | None = None,
    scim: ScimSettings | None = None,
    ssf: SsfSettings | None = None,
) -> None:
    """Run the API with uvicorn until interrupted (SCIM and SSF settings from the environment,
    ``REVOCAST_SCIM_*`` and ``REVOCAST_SSF_*``, unless given)."""
    import uvicorn

    app = create_app(
        settings,
        scim=scim if scim is not None else ScimSettings.load(),
        ssf=ssf if ssf is not None else SsfSettings.load(),
    )
    uvicorn.run(
        app,
        host=host or settings.api_host,
        port=settings.api_port if port is None else port,
        log_level=settings.log_level.lower(),
        # The access log has no headers, so no tokens; it does have client addresses.
        access_log=True,
    )


def main() -> int:
    """``python -m producer.api``: settings from the environment, then :func:`serve`."""
    try:
        settings = ProducerSettings.load()
        logging.basicConfig(
            level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        serve(settings)
    except ConfigError as exc:
        print(f"revocast-api: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
