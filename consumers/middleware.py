"""Pure ASGI middleware for Starlette/FastAPI (or any ASGI app): verify every request.

Answers, following RFC 6750 and Entra ID's continuous access evaluation (CAE):

============================ ====== =====================================================
case                         status ``WWW-Authenticate``
============================ ====== =====================================================
no bearer token              401    ``Bearer`` (no error code, per RFC 6750 3.1)
invalid or revoked token     401    ``Bearer error="invalid_token", error_description=".."``
claims changed since ``iat`` 401    ``Bearer error="insufficient_claims", claims="<b64>"``
privileged, view stale       503    none; ``Retry-After``; the reason in the JSON body
============================ ====== =====================================================

On success the :class:`~consumers.verifier.VerifiedToken` and its claims are put
in ``scope["state"]`` (so ``request.state.revocast`` and
``request.state.claims`` in Starlette). Paths in ``exempt`` (prefixes, e.g.
``/healthz``) pass without a token. A WebSocket handshake that fails is closed
with code 1008 (policy violation) before it is accepted.

Verification never blocks the event loop: a JWKS fetch for an unknown ``kid``
runs in a worker thread and is awaited (see :class:`~consumers.verifier.RemoteKeys`).

Privileged requests are chosen by path prefixes or by a predicate on the ASGI
scope (routing has not happened yet at this point, so it sees method and path).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from consumers.exceptions import TokenRejected
from consumers.verifier import Verifier, averify_request

__all__ = ["RevocationMiddleware"]

Predicate = Callable[[Scope], bool]


def _prefixes(prefixes: Sequence[str]) -> Predicate:
    wanted = tuple(prefixes)

    def match(scope: Scope) -> bool:
        path: str = scope.get("path", "")
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in wanted)

    return match


class RevocationMiddleware:
    """Reject requests whose bearer token is invalid, revoked or stale.

    app.add_middleware(RevocationMiddleware, verifier=verifier,
                       privileged=["/admin"], exempt=["/healthz"])
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: Verifier,
        *,
        privileged: Sequence[str] | Predicate = (),
        exempt: Sequence[str] | Predicate = (),
        realm: str | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.is_privileged = privileged if callable(privileged) else _prefixes(privileged)
        self.is_exempt = exempt if callable(exempt) else _prefixes(exempt)
        self.realm = realm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.is_exempt(scope):
            await self.app(scope, receive, send)
            return
        authorization = None
        for name, value in scope.get("headers", ()):
            if name.lower() == b"authorization":
                authorization = value.decode("latin-1")
                break
        try:
            verified = await averify_request(
                self.verifier, authorization, self.is_privileged(scope)
            )
        except TokenRejected as exc:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": exc.reason})
            else:
                await self._reject(exc, send)
            return
        state = scope.setdefault("state", {})
        state["revocast"] = verified
        state["claims"] = verified.claims
        await self.app(scope, receive, send)

    async def _reject(self, exc: TokenRejected, send: Send) -> None:
        body = json.dumps(
            {
                "error": exc.error or "unauthorized",
                "error_description": exc.description,
                "reason": exc.reason,
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        if exc.status == 401:
            challenge = exc.www_authenticate(self.realm)
            headers.append((b"www-authenticate", challenge.encode("latin-1")))
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
