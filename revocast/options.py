"""The global options of ``revocast`` turned into settings, and the shared output helpers.

Global flags (``--bootstrap-servers``, ``--topic-prefix``, ``--delivery-timeout``) override the
environment; everything else comes from the settings classes, read once per command.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from producer.settings import ProducerSettings

__all__ = ["print_json", "producer_settings"]


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


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))
