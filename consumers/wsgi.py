"""WSGI middleware for Flask, Django or any WSGI app: verify every request.

The same answers as the ASGI :class:`~consumers.middleware.RevocationMiddleware`, decided by
the same :func:`~consumers.verifier.verify_request` (RFC 6750 and Entra ID's continuous
access evaluation):

============================ ====== =====================================================
case                         status ``WWW-Authenticate``
============================ ====== =====================================================
no bearer token              401    ``Bearer`` (no error code, per RFC 6750 3.1)
invalid or revoked token     401    ``Bearer error="invalid_token", error_description=".."``
claims changed since ``iat`` 401    ``Bearer error="insufficient_claims", claims="<b64>"``
privileged, view stale       503    none; ``Retry-After``; the reason in the JSON body
============================ ====== =====================================================

Every refusal has a JSON body ``{"error", "error_description", "reason"}`` and
``Cache-Control: no-store``. On success the :class:`~consumers.verifier.VerifiedToken` is put
in ``environ["revocast.token"]`` and its claims in ``environ["revocast.claims"]`` (Flask:
``request.environ``; Django: ``request.META``). Paths in ``exempt`` (prefixes, e.g.
``/healthz``) pass without a token. Privileged requests are chosen by path prefixes or by a
predicate on the WSGI ``environ`` (it sees ``REQUEST_METHOD`` and ``PATH_INFO``).

    # Flask
    app.wsgi_app = RevocationWSGIMiddleware(app.wsgi_app, verifier=verifier,
                                            privileged=["/admin"], exempt=["/healthz"])
    # Django (wsgi.py)
    application = RevocationWSGIMiddleware(get_wsgi_application(), verifier=verifier)

Guarantee: the wrapped app is called only for a request whose token passed every check (or an
exempt path); the token is never logged nor echoed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from typing import Any

from consumers.exceptions import TokenRejected
from consumers.middleware import _prefixes as scope_prefixes
from consumers.verifier import Verifier, verify_request

__all__ = ["RevocationWSGIMiddleware"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
Predicate = Callable[[Environ], bool]


def _path(environ: Environ) -> str:
    return str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))


def _prefixes(prefixes: Sequence[str]) -> Predicate:
    """The ASGI middleware's path-prefix rule, applied to the WSGI path."""
    match = scope_prefixes(prefixes)
    return lambda environ: match({"path": _path(environ)})


class RevocationWSGIMiddleware:
    """Reject requests whose bearer token is invalid, revoked or stale (WSGI).

    app.wsgi_app = RevocationWSGIMiddleware(app.wsgi_app, verifier=verifier,
                                            privileged=["/admin"], exempt=["/healthz"])
    """

    def __init__(
        self,
        app: WSGIApp,
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

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self.is_exempt(environ):
            return self.app(environ, start_response)
        authorization = environ.get("HTTP_AUTHORIZATION")
        try:
            verified = verify_request(self.verifier, authorization, self.is_privileged(environ))
        except TokenRejected as exc:
            return self._reject(exc, start_response)
        environ["revocast.token"] = verified
        environ["revocast.claims"] = verified.claims
        return self.app(environ, start_response)

    def _reject(self, exc: TokenRejected, start_response: StartResponse) -> list[bytes]:
        body = json.dumps(
            {
                "error": exc.error or "unauthorized",
                "error_description": exc.description,
                "reason": exc.reason,
            }
        ).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]
        if exc.status == 401:
            headers.append(("WWW-Authenticate", exc.www_authenticate(self.realm)))
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            headers.append(("Retry-After", str(retry_after)))
        start_response(f"{exc.status} {HTTPStatus(exc.status).phrase}", headers)
        return [body]
