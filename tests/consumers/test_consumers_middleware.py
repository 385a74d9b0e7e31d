"""RevocationMiddleware on a Starlette app, through Starlette's TestClient."""

from __future__ import annotations

import base64
import json
import time
import warnings
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from consumers import FreshnessGuard, RevocationMiddleware, Verifier
from consumers.testing import InMemoryRevocations

if TYPE_CHECKING:
    from starlette.testclient import TestClient


def _test_client_class() -> type[TestClient]:
    # Starlette 1.10 warns when its TestClient runs on httpx rather than httpx2;
    # the project pins httpx, so accept it here (and only here).
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Using `httpx` with `starlette.testclient` is deprecated"
        )
        from starlette.testclient import TestClient

    return TestClient


KEY = ec.generate_private_key(ec.SECP256R1())


def make_token(**extra: Any) -> str:
    now = int(time.time())
    body = {"sub": "alice", "aud": "api", "iat": now - 5, "exp": now + 300, **extra}
    return jwt.encode(body, KEY, algorithm="ES256", headers={"kid": "k1"})


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"sub": request.state.claims["sub"], "via": request.state.revocast.subject})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True, "has_claims": hasattr(request.state, "claims")})


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"sub": websocket.state.claims["sub"]})
    await websocket.close()


@pytest.fixture
def rev() -> InMemoryRevocations:
    return InMemoryRevocations()


@pytest.fixture
def guard() -> FreshnessGuard:
    g = FreshnessGuard(max_staleness=5.0)
    g.set_partitions([0])
    return g


def build(rev: InMemoryRevocations, guard: FreshnessGuard, **options: Any) -> TestClient:
    verifier = Verifier(
        KEY.public_key(), algorithms=["ES256"], state=rev.state, freshness=guard, audience="api"
    )
    app = Starlette(
        routes=[
            Route("/me", whoami),
            Route("/admin/users", whoami, methods=["GET", "DELETE"]),
            Route("/healthz", health),
            WebSocketRoute("/ws", echo),
        ]
    )
    options.setdefault("privileged", ["/admin"])
    options.setdefault("exempt", ["/healthz"])
    app.add_middleware(RevocationMiddleware, verifier=verifier, **options)
    return _test_client_class()(app)


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def test_valid_token_reaches_the_app_with_claims_in_state(rev: Any, guard: Any) -> None:
    with build(rev, guard) as client:
        response = client.get("/me", headers=auth(make_token()))
    assert response.status_code == 200
    assert response.json() == {"sub": "alice", "via": "alice"}


def test_missing_token_is_401_with_a_bare_challenge(rev: Any, guard: Any) -> None:
    with build(rev, guard, realm="orders") as client:
        response = client.get("/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="orders"'
    assert response.json()["error"] == "unauthorized"


def test_invalid_token_is_401_invalid_token(rev: Any, guard: Any) -> None:
    expired = make_token(exp=int(time.time()) - 100)
    with build(rev, guard) as client:
        response = client.get("/me", headers=auth(expired))
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="')
    assert "expired" in challenge
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["reason"] == "expired"


def test_revoked_token_is_401_invalid_token(rev: InMemoryRevocations, guard: Any) -> None:
    rev.revoke_session("s-1", subject="alice")
    with build(rev, guard) as client:
        response = client.get("/me", headers=auth(make_token(sid="s-1")))
        assert client.get("/me", headers=auth(make_token(sid="s-2"))).status_code == 200
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert "revoked" in response.headers["www-authenticate"]
    assert response.json()["reason"] == "session_revoked"


def test_stale_claims_get_a_cae_claims_challenge(rev: InMemoryRevocations, guard: Any) -> None:
    rev.change_claims("alice", changed_at=time.time())
    with build(rev, guard) as client:
        response = client.get("/me", headers=auth(make_token()))
    assert response.status_code == 401
    header = response.headers["www-authenticate"]
    assert header.startswith('Bearer error="insufficient_claims"')
    claims = header.split('claims="', 1)[1].rstrip('"')
    assert "nbf" in json.loads(base64.b64decode(claims))["access_token"]


def test_privileged_route_is_503_while_the_view_is_stale(
    rev: InMemoryRevocations, guard: FreshnessGuard
) -> None:
    tok = make_token()
    with build(rev, guard) as client:
        assert client.get("/me", headers=auth(tok)).status_code == 200  # not privileged
        response = client.get("/admin/users", headers=auth(tok))
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "www-authenticate" not in response.headers
        assert "not ready" in response.json()["error_description"]
        guard.mark_ready()
        guard.observe(0, time.time())
        assert client.get("/admin/users", headers=auth(tok)).status_code == 200
        guard.observe(0, time.time() - 60)  # older records never make it staler...
        assert client.get("/admin/users", headers=auth(tok)).status_code == 200
    stale = FreshnessGuard(max_staleness=1.0)
    stale.set_partitions([0])
    stale.mark_ready()
    stale.observe(0, time.time() - 30)
    with build(rev, stale) as client:
        response = client.get("/admin/users", headers=auth(tok))
    assert response.status_code == 503
    assert "partition 0" in response.json()["error_description"]


def test_privileged_by_predicate(rev: InMemoryRevocations, guard: FreshnessGuard) -> None:
    def deletes(scope: Any) -> bool:
        return bool(scope["method"] == "DELETE")

    with build(rev, guard, privileged=deletes) as client:
        assert client.get("/admin/users", headers=auth(make_token())).status_code == 200
        assert client.delete("/admin/users", headers=auth(make_token())).status_code == 503


def test_exempt_paths_need_no_token(rev: Any, guard: Any) -> None:
    with build(rev, guard) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "has_claims": False}


def test_websocket_handshake_is_verified(rev: InMemoryRevocations, guard: Any) -> None:
    with build(rev, guard) as client:
        with client.websocket_connect("/ws", headers=auth(make_token())) as ws:
            assert ws.receive_json() == {"sub": "alice"}
        rev.revoke_token("j-1")
        with (
            pytest.raises(WebSocketDisconnect) as info,
            client.websocket_connect("/ws", headers=auth(make_token(jti="j-1"))) as ws,
        ):
            ws.receive_json()
        assert info.value.code == 1008
