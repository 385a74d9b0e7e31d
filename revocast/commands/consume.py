"""``revocast consume --service NAME``: run a revocast consumer for a service."""

from __future__ import annotations

import argparse
from typing import Any

from revocast.commands import Subparsers
from schemas import ConfigError

__all__ = ["register"]


def register(subparsers: Subparsers) -> None:
    consume = subparsers.add_parser("consume", help="run a revocast consumer for a service")
    consume.add_argument("--service", required=True, metavar="NAME")
    consume.add_argument("--instance", metavar="ID", help="instance name (default: host:pid)")
    consume.add_argument("--jwks", metavar="FILE_OR_URL", help="trusted keys (JWKS)")
    consume.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # revocast is the app layer and may use both packages; import lazily so the other
    # commands never load the consumer side.
    from pydantic import ValidationError

    from consumers.service import run_service
    from consumers.settings import ConsumerSettings

    overrides: dict[str, Any] = {"service": args.service}
    if args.instance:
        overrides["instance"] = args.instance
    if args.jwks:
        overrides["jwks"] = args.jwks
    if args.bootstrap_servers:
        overrides["kafka_bootstrap_servers"] = args.bootstrap_servers
    if args.topic_prefix is not None:
        overrides["topic_prefix"] = args.topic_prefix
    try:
        consumer_settings = ConsumerSettings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ConsumerSettings.env_name(str(err["loc"][0])) if err["loc"] else "settings"
        raise ConfigError(f"{name}: {err['msg']}") from None
    # run_service logs its own failures and returns the consumer's documented exit code.
    return run_service(consumer_settings)
