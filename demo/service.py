"""One demo service: a revocast consumer behind a small HTTP API.

    python -m demo.service --service orders --port 8081 --idp-jwk idp.json

Event topics, the event-signing JWKS and the broker come from the REVOCAST_* and
KAFKA_BOOTSTRAP_SERVERS variables (see :mod:`consumers.settings`). Every request
but ``/healthz`` needs a bearer token from the demo identity provider; ``/admin``
is privileged and is refused (503) while the service's view is not fresh.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack
from pathlib import Path

import jwt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from consumers import ConsumerSettings, RevocationConsumer, RevocationMiddleware, Verifier
from consumers.service import build_consumer

IDP_ISSUER = "https://idp.demo.revocast"


def make_app(consumer: RevocationConsumer, verifier: Verifier) -> RevocationMiddleware:
    async def whoami(request: Request) -> JSONResponse:
        claims = request.state.revocast.claims
        return JSONResponse({"service": consumer.service, "sub": claims.get("sub")})

    async def refund(request: Request) -> JSONResponse:
        return JSONResponse({"service": consumer.service, "refunded": True})

    async def healthz(request: Request) -> JSONResponse:
        body = {
            "service": consumer.service,
            "ready": consumer.ready,
            "revoked": len(consumer.state),
        }
        return JSONResponse(body, status_code=200 if consumer.ready else 503)

    app = Starlette(
        routes=[
            Route("/whoami", whoami),
            Route("/admin/refund", refund, methods=["POST"]),
            Route("/healthz", healthz),
        ]
    )
    return RevocationMiddleware(app, verifier, privileged=["/admin"], exempt=["/healthz"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.service", description=__doc__)
    parser.add_argument("--service", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--idp-jwk", type=Path, required=True, help="the IdP's public JWK file")
    args = parser.parse_args(argv)

    idp_key = jwt.PyJWK(json.loads(args.idp_jwk.read_text()))
    settings = ConsumerSettings(service=args.service, instance=f"{args.service}-1")
    with ExitStack() as stack:
        consumer = build_consumer(settings, stack)
        consumer.start()
        stack.callback(consumer.stop)
        verifier = Verifier(
            idp_key.key,
            algorithms=["EdDSA"],
            state=consumer.state,
            freshness=consumer,
            issuer=IDP_ISSUER,
        )
        uvicorn.run(
            make_app(consumer, verifier),
            host="127.0.0.1",
            port=args.port,
            log_level="warning",
            access_log=False,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
