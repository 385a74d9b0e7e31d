"""``revocast print-config``: the effective configuration, secrets redacted."""

from __future__ import annotations

import argparse
import json

from producer.settings import ProducerSettings
from revocast.commands import Subparsers
from revocast.options import print_json, producer_settings

__all__ = ["register"]


def register(subparsers: Subparsers) -> None:
    pc = subparsers.add_parser("print-config", help="effective configuration, secrets redacted")
    pc.add_argument("--json", action="store_true", help="print JSON")
    pc.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = producer_settings(args)
    values = settings.redacted()
    if args.json:
        print_json(values)
        return 0
    for name, env, description in ProducerSettings.describe():
        print(f"{name} = {json.dumps(values[name], default=str)}")
        print(f"    ${env}: {description}")
    return 0
