"""``revocast serve-api``: the HTTP API (uvicorn)."""

from __future__ import annotations

import argparse

from revocast.commands import Subparsers
from revocast.options import producer_settings

__all__ = ["register"]


def register(subparsers: Subparsers) -> None:
    api = subparsers.add_parser("serve-api", help="run the HTTP API")
    api.add_argument("--host", help="default: $REVOCAST_API_HOST")
    api.add_argument("--port", type=int, help="default: $REVOCAST_API_PORT")
    api.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from producer.api import serve

    serve(producer_settings(args), host=args.host, port=args.port)
    return 0
