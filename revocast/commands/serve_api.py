"""``revocast serve-api``: the HTTP API (uvicorn).

Before uvicorn starts, what would make every request fail is checked and reported in one
line: the signing key, the API tokens (none means every request gets 401), and the events
topic (missing: create it with ``revocast topics ensure``). A broker that does not answer yet
is not fatal: the API starts and connects on demand.
"""

from __future__ import annotations

import argparse
import sys

from producer.topics import events_retention_ms
from revocast.commands import Subparsers
from revocast.options import producer_settings
from schemas import BrokerUnavailableError, ConfigError

__all__ = ["register"]

TOKENS_EXAMPLE = (
    'REVOCAST_API_TOKENS=\'[{"name": "iam", "token": "<at least 16 random characters>", '
    '"scopes": ["revoke:*", "status:read"]}]\''
)


def register(subparsers: Subparsers) -> None:
    api = subparsers.add_parser("serve-api", help="run the HTTP API")
    api.add_argument("--host", help="default: $REVOCAST_API_HOST")
    api.add_argument("--port", type=int, help="default: $REVOCAST_API_PORT")
    api.set_defaults(handler=run, log_level="INFO")


def run(args: argparse.Namespace) -> int:
    from producer.api import serve

    settings = producer_settings(args)
    if args.port is not None and not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a TCP port (0-65535)")
    settings.signing_key()
    if not settings.tokens():
        raise ConfigError(
            f"no API tokens: every request would get 401; set {TOKENS_EXAMPLE} "
            "or REVOCAST_API_TOKENS_FILE"
        )
    try:
        retention = events_retention_ms(
            settings.bootstrap_servers,
            settings.topics,
            timeout=settings.connect_timeout,
            kafka_options=settings.kafka_security.to_kafka_python(),
        )
    except BrokerUnavailableError as exc:
        print(f"revocast serve-api: {exc}; starting anyway (connects on demand)", file=sys.stderr)
    else:
        if retention is None:
            raise ConfigError(
                f"the events topic {settings.topics.events} does not exist on "
                f"{settings.bootstrap_servers}: create it with `revocast topics ensure`"
            )
    serve(settings, host=args.host, port=args.port)
    return 0
