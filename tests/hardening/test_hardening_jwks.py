"""Token-signing keys from a JWKS URL never block the event loop. Loopback servers only."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt import PyJWKClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from consumers import KeysUnavailableError, RevocationMiddleware, Verifier
from consumers.testing import AlwaysFresh, InMemoryRevocations
from consumers.verifier import RemoteKeys
from tests.producer.producer_testkit import ApiServer

pytestmark = pytest.mark.timeout(60)

KEYS = {
    "k1": ec.generate_private_key(ec.SECP256R1()),
    "k2": ec.generate_private_key(ec.SECP256R1()),
}


def _token(kid: str = "k1", **extra: Any) -> str:
    now = int(time.time())
    claims = {"sub": "alice", "iat": now - 5, "exp": now + 300, **extra}
    return jwt.encode(claims, KEYS[kid], algorithm="ES256", headers={"kid": kid})


class JwksServer:
    """A JWKS endpoint on loopback that can be held (``gate``) to play a slow IdP."""

    def __init__(self) -> None:
        self.kids = ["k1"]
        self.gate = threading.Event()
        self.gate.set()
        self.asked = threading.Event()
        self.requests = 0
        self.timed_out = False
        self.fail = False
        self.pad = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                outer.asked.set()
                if not outer.gate.wait(15):
                    outer.timed_out = True
                if outer.fail:
                    self.send_error(500)
                    return
                keys = [
                    {
                        **jwt.algorithms.ECAlgorithm.to_jwk(KEYS[k].public_key(), as_dict=True),
                        "kid": k,
                        "use": "sig",
                        "alg": "ES256",
                    }
                    for k in outer.kids
                ]
                body = json.dumps({"keys": keys, "pad": "x" * outer.pad}).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up first

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    with JwksServer() as server:
        yield server


def _app(verifier: Verifier) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"sub": request.state.claims["sub"]})

    app = Starlette(routes=[Route("/healthz", healthz), Route("/me", me)])
    app.add_middleware(RevocationMiddleware, verifier=verifier, exempt=["/healthz"])
    return app


def _verifier(key: Any) -> Verifier:
    return Verifier(
        key,
        algorithms=["ES256"],
        state=InMemoryRevocations().state,
        freshness=AlwaysFresh(),
        require=("exp",),
    )


def test_a_slow_jwks_endpoint_does_not_freeze_healthz(jwks: JwksServer) -> None:
    jwks.gate.clear()  # the IdP hangs
    verifier = _verifier(PyJWKClient(jwks.url))
    with ApiServer(_app(verifier)) as server:
        results: dict[str, Any] = {}

        def call_me() -> None:
            try:
                results["me"] = httpx.get(
                    f"{server.url}/me", headers={"authorization": f"Bearer {_token()}"}, timeout=20
                )
            except httpx.HTTPError as exc:  # pragma: no cover - reported by the assert below
                results["me"] = exc

        caller = threading.Thread(target=call_me)
        caller.start()
        assert jwks.asked.wait(10), "the verifier never asked the JWKS endpoint"
        health = httpx.get(f"{server.url}/healthz", timeout=5)  # must not wait for the IdP
        assert health.status_code == 200
        assert not jwks.gate.is_set()  # the IdP was still hanging
        assert not jwks.timed_out
        caller.join(20)
        jwks.gate.set()
    me = results["me"]
    assert isinstance(me, httpx.Response), me
    assert me.status_code == 503  # no key yet, and the fetch outlived the short timeout
    assert "keys_unavailable" in me.text


def test_cached_keys_are_served_while_a_refresh_hangs(jwks: JwksServer) -> None:
    keys = RemoteKeys(jwks.url, timeout=1.0, min_refetch_interval=0.0)
    verifier = _verifier(keys)
    assert verifier.verify(_token("k1")).subject == "alice"  # first fetch, gate open
    jwks.gate.clear()
    jwks.kids = ["k1", "k2"]
    with pytest.raises(KeysUnavailableError):  # unknown kid: a refresh that hangs, bounded
        verifier.verify(_token("k2"))
    assert verifier.verify(_token("k1")).subject == "alice"  # cached key meanwhile
    jwks.gate.set()
    deadline = time.monotonic() + 10
    while "k2" not in keys.kids and time.monotonic() < deadline:
        time.sleep(0.05)
    assert verifier.verify(_token("k2")).subject == "alice"


async def test_the_async_path_serves_cached_keys_and_refreshes_in_the_background(
    jwks: JwksServer,
) -> None:
    keys = RemoteKeys(jwks.url, timeout=1.0, min_refetch_interval=0.0)
    verifier = _verifier(keys)
    assert (await verifier.averify(_token("k1"))).subject == "alice"
    jwks.gate.clear()
    jwks.kids = ["k1", "k2"]
    with pytest.raises(KeysUnavailableError):
        await verifier.averify(_token("k2"))
    assert (await verifier.averify(_token("k1"))).subject == "alice"
    jwks.gate.set()


def test_unknown_kids_do_not_hammer_the_idp(jwks: JwksServer) -> None:
    keys = RemoteKeys(jwks.url, timeout=1.0, min_refetch_interval=60.0)
    verifier = _verifier(keys)
    assert verifier.verify(_token("k1")).subject == "alice"
    for _ in range(5):
        with pytest.raises(Exception, match="not a trusted signing key"):
            verifier.verify(_token("k2"))
    assert jwks.requests <= 2


def test_a_failing_idp_is_not_asked_on_every_request(jwks: JwksServer) -> None:
    keys = RemoteKeys(jwks.url, timeout=1.0, refresh_interval=0.01, min_refetch_interval=60.0)
    verifier = _verifier(keys)
    assert verifier.verify(_token("k1")).subject == "alice"
    jwks.fail = True
    time.sleep(0.05)  # the cache is now due for a refresh
    for _ in range(20):
        assert verifier.verify(_token("k1")).subject == "alice"  # cached key, never waits
    time.sleep(0.2)
    assert jwks.requests <= 2


def test_an_idp_jwks_is_bounded_in_size(jwks: JwksServer) -> None:
    jwks.pad = 4 * 1024 * 1024
    keys = RemoteKeys(jwks.url, timeout=5.0)
    with pytest.raises(KeysUnavailableError, match="larger than"):
        _verifier(keys).verify(_token("k1"))
