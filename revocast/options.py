"""The global options of ``revocast`` turned into settings, and the shared output helpers.

Global flags (``--bootstrap-servers``, ``--topic-prefix``, ``--delivery-timeout``) override the
environment; everything else comes from the settings classes, read once per command.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from producer.settings import ProducerSettings
from schemas import ConfigError

if TYPE_CHECKING:
    from consumers.settings import ConsumerSettings

__all__ = ["consumer_settings", "print_json", "producer_settings"]


def producer_settings(args: argparse.Namespace) -> ProducerSettings:
    """The producer's settings: environment, then the global flags on top."""
    overrides: dict[str, Any] = {}
    if args.bootstrap_servers:
        overrides["bootstrap_servers"] = args.bootstrap_servers
    if args.topic_prefix is not None:
        overrides["topic_prefix"] = args.topic_prefix
    if args.delivery_timeout is not None:
        overrides["delivery_timeout"] = args.delivery_timeout
    return ProducerSettings.load(**overrides)


def consumer_settings(args: argparse.Namespace, **overrides: Any) -> ConsumerSettings:
    """The consumer's settings: environment, the global flags, then ``overrides``."""
    # The consumer side is imported only by the commands that need it.
    from pydantic import ValidationError

    from consumers.settings import ConsumerSettings

    if args.bootstrap_servers:
        overrides.setdefault("kafka_bootstrap_servers", args.bootstrap_servers)
    if args.topic_prefix is not None:
        overrides.setdefault("topic_prefix", args.topic_prefix)
    try:
        return ConsumerSettings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ConsumerSettings.env_name(str(err["loc"][0])) if err["loc"] else "settings"
        raise ConfigError(f"{name}: {err['msg'].removeprefix('Value error, ')}") from None


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))
