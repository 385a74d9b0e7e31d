"""The read-only admin endpoint of a consumer process, served beside ``/metrics``.

One small WSGI app on the metrics port answers what the running service decides:

============================== ==========================================================
``GET /metrics``               Prometheus text (``prometheus_client``)
``GET /revocast/inspect?...``  the decision for the given ids and claims, with the rule,
                               plus the view's freshness and applied-through offsets
``GET /revocast/freshness``    freshness, readiness and applied-through offsets only
============================== ==========================================================

``/revocast/inspect`` takes the claims a token would carry as query parameters: ``sub``,
``sid``, ``jti``, ``iat`` (epoch seconds or ISO 8601), ``azp``, ``client_id``, ``tid`` and the
header's ``kid``. Without ``iat`` a time-based fact decides (a token without ``iat`` fails every
such rule), so ``?sub=alice`` answers "is alice offboarded at all".

Guarantees: read-only (only ``GET``/``HEAD``; anything else is ``405``); it takes ids, never a
token, and logs nothing; every parameter is bounded (256 characters, one value, known names
only) and a bad one is a ``400`` that names it; it binds where the metrics server binds,
``127.0.0.1`` unless ``REVOCAST_METRICS_HOST`` says otherwise. Not guaranteed: the answer
is this instance's view at the moment of the request, as fresh as ``freshness`` says.

    server, thread = serve_admin(consumer, "127.0.0.1", 9464)
    # curl 'http://127.0.0.1:9464/revocast/inspect?sub=alice&sid=s-42'
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from socketserver import ThreadingMixIn
from typing import Any, Protocol
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app

from consumers.freshness import FreshnessReport
from consumers.state import RevocationState

__all__ = ["CLAIM_PARAMS", "Inspectable", "admin_app", "inspect_claims", "serve_admin"]

CLAIM_PARAMS = ("sub", "sid", "jti", "iat", "azp", "client_id", "tid")
"""Query parameters read as token claims (``kid`` is read as the header's)."""

_MAX_VALUE = 256
_IAT_BOUNDS = (946_684_800.0, 4_102_444_800.0)  # 2000-01-01 .. 2100-01-01, as schemas bounds times

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class Inspectable(Protocol):
    """What the endpoint reads from a consumer (a :class:`RevocationConsumer` has it all)."""

    service: str
    instance: str
    state: RevocationState

    @property
    def ready(self) -> bool: ...

    def freshness(self, now: float | None = None) -> FreshnessReport: ...

    def positions(self) -> dict[int, int]: ...


class BadParameterError(ValueError):
    """A query parameter that cannot be used; the message names it."""


def _iso_time(text: str) -> float:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadParameterError("iat: not epoch seconds nor an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise BadParameterError("iat: an ISO 8601 time needs a timezone (Z or +hh:mm)")
    return parsed.timestamp()


def _iat(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = _iso_time(text)
    if not math.isfinite(value) or not _IAT_BOUNDS[0] <= value <= _IAT_BOUNDS[1]:
        raise BadParameterError("iat: must be between 2000 and 2100")
    return value


def inspect_claims(query: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(claims, header)`` from a query string, or :class:`BadParameterError`."""
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=False, max_num_fields=16)
    except ValueError:
        raise BadParameterError("too many query parameters (at most 16)") from None
    claims: dict[str, Any] = {}
    header: dict[str, Any] = {}
    for name, values in params.items():
        if name not in (*CLAIM_PARAMS, "kid"):
            known = ", ".join((*CLAIM_PARAMS, "kid"))
            raise BadParameterError(f"{name[:64]}: unknown parameter (known: {known})")
        if len(values) != 1:
            raise BadParameterError(f"{name}: give it once")
        value = values[0].strip()
        if not value or len(value) > _MAX_VALUE:
            raise BadParameterError(f"{name}: must be 1 to {_MAX_VALUE} characters")
        if name == "kid":
            header["kid"] = value
        elif name == "iat":
            claims["iat"] = _iat(value)
        else:
            claims[name] = value
    if not claims and not header:
        raise BadParameterError(f"name at least one of {', '.join((*CLAIM_PARAMS, 'kid'))}")
    return claims, header


def _view(consumer: Inspectable) -> dict[str, Any]:
    return {
        "service": consumer.service,
        "instance": consumer.instance,
        "ready": consumer.ready,
        "freshness": consumer.freshness().to_dict(),
        "applied_through": {str(p): o - 1 for p, o in sorted(consumer.positions().items())},
    }


def _json(start_response: StartResponse, status: str, body: Mapping[str, Any]) -> list[bytes]:
    data = json.dumps(body, default=str).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [data]


def admin_app(consumer: Inspectable, registry: CollectorRegistry = REGISTRY) -> WSGIApp:
    """The WSGI app: ``/revocast/*`` answered here, everything else by the metrics app."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/revocast/"):
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        if path == "/revocast/freshness":
            return _json(start_response, "200 OK", _view(consumer))
        if path != "/revocast/inspect":
            return _json(start_response, "404 Not Found", {"error": f"no such path {path[:64]}"})
        try:
            claims, header = inspect_claims(environ.get("QUERY_STRING", ""))
        except BadParameterError as exc:
            return _json(start_response, "400 Bad Request", {"error": str(exc)})
        decision = consumer.state.check(claims, header)
        answer = {
            "asked": {"claims": claims, "header": header},
            "decision": {
                "verdict": str(decision.verdict),
                "rule": str(decision.rule) if decision.rule is not None else None,
                "detail": decision.detail,
                "since": decision.since,
            },
            **_view(consumer),
        }
        return _json(start_response, "200 OK", answer)

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged (ids asked about stay out of logs)."""


def serve_admin(
    consumer: Inspectable, host: str, port: int, *, registry: CollectorRegistry = REGISTRY
) -> tuple[WSGIServer, threading.Thread]:
    """Serve :func:`admin_app` on ``host:port`` (0: a free port) in a daemon thread."""
    server = make_server(
        host, port, admin_app(consumer, registry), _Server, handler_class=_QuietHandler
    )
    thread = threading.Thread(
        target=server.serve_forever, name=f"revocast-admin-{port}", daemon=True
    )
    thread.start()
    return server, thread
