"""RevocationWSGIMiddleware around a Flask app, behind a real WSGI server (wsgiref) on
loopback: the same answers as the ASGI RevocationMiddleware for the same requests."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator, MutableMapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask, jsonify, request

from consumers import FreshnessGuard, RevocationMiddleware, Verifier
from consumers.testing import InMemoryRevocations
from consumers.wsgi import RevocationWSGIMiddleware

KEY = ec.generate_private_key(ec.SECP256R1())


def make_token(**extra: Any) -> str:
    now = int(time.time())
    body = {"sub": "alice", "aud": "api", "iat": now - 5, "exp": now + 300, **extra}
    return jwt.encode(body, KEY, algorithm="ES256", headers={"kid": "k1"})


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def flask_app() -> Flask:
    app = Flask("orders")

    @app.get("/me")
    def me() -> Any:
        claims = request.environ["revocast.claims"]
        return jsonify(sub=claims["sub"], via=request.environ["revocast.token"].subject)

    @app.route("/admin/users", methods=["GET", "DELETE"])
    def users() -> Any:
        return jsonify(sub=request.environ["revocast.claims"]["sub"])

    @app.get("/healthz")
    def health() -> Any:
        return jsonify(ok=True, has_claims="revocast.claims" in request.environ)

    return app


@pytest.fixture
def rev() -> InMemoryRevocations:
    return InMemoryRevocations()


@pytest.fixture
def guard() -> FreshnessGuard:
    g = FreshnessGuard(max_staleness=5.0)
    g.set_partitions([0])
    return g


def verifier_for(rev: InMemoryRevocations, guard: FreshnessGuard) -> Verifier:
    return Verifier(
        KEY.public_key(), algorithms=["ES256"], state=rev.state, freshness=guard, audience="api"
    )


@pytest.fixture
def served(rev: InMemoryRevocations, guard: FreshnessGuard) -> Iterator[httpx.Client]:
    """The Flask app behind the WSGI middleware, served by wsgiref on 127.0.0.1."""
    app = flask_app()
    app.wsgi_app = RevocationWSGIMiddleware(  # type: ignore[method-assign]
        app.wsgi_app,
        verifier=verifier_for(rev, guard),
        privileged=["/admin"],
        exempt=["/healthz"],
        realm="orders",
    )
    server = make_server("127.0.0.1", 0, app, _Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}", timeout=10) as c:
            yield c
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_valid_token_reaches_flask_with_claims_in_environ(served: httpx.Client) -> None:
    response = served.get("/me", headers=auth(make_token()))
    assert response.status_code == 200
    assert response.json() == {"sub": "alice", "via": "alice"}


def test_missing_token_is_401_with_a_bare_challenge(served: httpx.Client) -> None:
    response = served.get("/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="orders"'
    assert response.json()["error"] == "unauthorized"


def test_revoked_token_is_401_and_another_session_passes(
    served: httpx.Client, rev: InMemoryRevocations
) -> None:
    rev.revoke_session("s-1", subject="alice")
    response = served.get("/me", headers=auth(make_token(sid="s-1")))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["reason"] == "session_revoked"
    assert served.get("/me", headers=auth(make_token(sid="s-2"))).status_code == 200


def test_stale_claims_get_a_claims_challenge(
    served: httpx.Client, rev: InMemoryRevocations
) -> None:
    rev.change_claims("alice", changed_at=time.time())
    response = served.get("/me", headers=auth(make_token()))
    assert response.status_code == 401
    header = response.headers["www-authenticate"]
    assert header.startswith('Bearer realm="orders", error="insufficient_claims"')
    claims = header.split('claims="', 1)[1].rstrip('"')
    assert "nbf" in json.loads(base64.b64decode(claims))["access_token"]


def test_privileged_is_503_until_the_view_is_fresh(
    served: httpx.Client, guard: FreshnessGuard
) -> None:
    tok = make_token()
    assert served.get("/me", headers=auth(tok)).status_code == 200
    response = served.get("/admin/users", headers=auth(tok))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "www-authenticate" not in response.headers
    assert "not ready" in response.json()["error_description"]
    guard.mark_ready()
    guard.observe(0, time.time())
    assert served.get("/admin/users", headers=auth(tok)).status_code == 200


def test_exempt_paths_need_no_token(served: httpx.Client) -> None:
    response = served.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "has_claims": False}


def test_privileged_by_predicate_on_environ(
    rev: InMemoryRevocations, guard: FreshnessGuard
) -> None:
    calls: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        calls.append(environ["REQUEST_METHOD"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    middleware = RevocationWSGIMiddleware(
        app,
        verifier=verifier_for(rev, guard),
        privileged=lambda environ: environ["REQUEST_METHOD"] == "DELETE",
    )
    statuses: list[str] = []
    for method in ("GET", "DELETE"):
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": "/x",
            "HTTP_AUTHORIZATION": f"Bearer {make_token()}",
        }
        b"".join(middleware(environ, lambda status, headers: statuses.append(status)))
    assert statuses == ["200 OK", "503 Service Unavailable"]
    assert calls == ["GET"]


# ----------------------------------------------------------------- same answers as ASGI


async def _asgi_answer(
    middleware: RevocationMiddleware, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    await middleware(scope, receive, send)
    start = sent[0]
    return (
        start["status"],
        {k.decode().lower(): v.decode() for k, v in start["headers"]},
        b"".join(m.get("body", b"") for m in sent[1:]),
    )


async def test_the_same_answers_as_the_asgi_middleware(
    rev: InMemoryRevocations, guard: FreshnessGuard
) -> None:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def wsgi_inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    verifier = verifier_for(rev, guard)
    options: dict[str, Any] = {"privileged": ["/admin"], "exempt": ["/healthz"], "realm": "r"}
    asgi = RevocationMiddleware(inner, verifier=verifier, **options)
    wsgi = RevocationWSGIMiddleware(wsgi_inner, verifier=verifier, **options)
    rev.revoke_token("j-1")
    rev.change_claims("bob", changed_at=time.time())
    cases = [
        ("/me", {}),
        ("/me", {"Authorization": "Basic abc"}),
        ("/me", auth("not-a-token")),
        ("/me", auth(make_token(exp=int(time.time()) - 100))),
        ("/me", auth(make_token(jti="j-1"))),
        ("/me", auth(make_token(sub="bob"))),
        ("/admin/x", auth(make_token())),
        ("/healthz", {}),
        ("/me", auth(make_token())),
    ]
    for path, headers in cases:
        status, asgi_headers, asgi_body = await _asgi_answer(asgi, path, headers)
        got: list[Any] = []
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path}
        if "Authorization" in headers:
            environ["HTTP_AUTHORIZATION"] = headers["Authorization"]
        body = b"".join(wsgi(environ, lambda s, h, got=got: got.extend([s, h])))
        wsgi_headers = {k.lower(): v for k, v in got[1]}
        assert int(got[0].split()[0]) == status, (path, headers)
        assert body == asgi_body, (path, headers)
        for name in ("www-authenticate", "retry-after", "cache-control", "content-type"):
            assert wsgi_headers.get(name) == asgi_headers.get(name), (path, name)
