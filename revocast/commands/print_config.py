"""``revocast print-config``: every setting, its environment variable, value and source.

Two groups: the producer side (``revoke``, ``status``, ``topics``, ``heartbeat``,
``serve-api``) and the consumer side (``consume``: JWKS, staleness, snapshots, Redis, metrics).
Each line says where the value came from: ``flag`` (a command-line option), ``env`` (the
variable named) or ``default``. Secrets are redacted: API tokens, Redis passwords, SASL
passwords never appear.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from producer.settings import ProducerSettings
from revocast.commands import Subparsers
from revocast.options import consumer_settings, print_json, producer_settings

__all__ = ["register"]

_FLAGS = {
    "producer": {
        "bootstrap_servers": "bootstrap_servers",
        "topic_prefix": "topic_prefix",
        "delivery_timeout": "delivery_timeout",
    },
    "consumer": {"kafka_bootstrap_servers": "bootstrap_servers", "topic_prefix": "topic_prefix"},
}


def register(subparsers: Subparsers) -> None:
    pc = subparsers.add_parser(
        "print-config", help="every setting with its env name and source, secrets redacted"
    )
    pc.add_argument(
        "--service", metavar="NAME", help="the consumer's service (default: $REVOCAST_SERVICE)"
    )
    pc.add_argument("--json", action="store_true", help="print JSON")
    pc.set_defaults(handler=run)


def _env_names(cls: type[BaseSettings], field: str) -> list[str]:
    alias = cls.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        names = [c.upper() for c in alias.choices if isinstance(c, str) and c.isupper()]
        if names:
            return names
    return [f"REVOCAST_{field.upper()}"]


def _source(cls: type[BaseSettings], field: str, flagged: bool) -> tuple[str, str]:
    """``(source, env name shown)`` for one field."""
    names = _env_names(cls, field)
    if flagged:
        return "flag", names[0]
    environ = {k.upper() for k in os.environ}
    for name in names:
        if name in environ:
            return "env", name
    if any(k.startswith(f"{names[0]}_") for k in environ):  # nested groups (security)
        return "env", f"{names[0]}_*"
    return "default", names[0]


def _consumer_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    from consumers.settings import ConsumerSettings

    overrides: dict[str, Any] = {}
    if args.service:
        overrides["service"] = args.service
    elif not os.environ.get("REVOCAST_SERVICE"):
        overrides["service"] = "(set by consume --service)"
    settings = consumer_settings(args, **overrides)
    rows = []
    for row in settings.describe():
        field = row["name"]
        flagged = (field == "service" and bool(args.service)) or (
            field in _FLAGS["consumer"] and getattr(args, _FLAGS["consumer"][field]) is not None
        )
        source, env = _source(ConsumerSettings, field, flagged)
        rows.append(
            {
                "name": field,
                "env": env,
                "value": row["value"],
                "source": source,
                "description": row["description"] or "",
            }
        )
    return rows


def _producer_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    values = producer_settings(args).redacted()
    rows = []
    for field, _env, description in ProducerSettings.describe():
        flag = _FLAGS["producer"].get(field)
        flagged = flag is not None and getattr(args, flag) is not None
        source, env = _source(ProducerSettings, field, flagged)
        rows.append(
            {
                "name": field,
                "env": env,
                "value": values[field],
                "source": source,
                "description": description,
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    groups = {"producer": _producer_rows(args), "consumer": _consumer_rows(args)}
    if args.json:
        # The producer's values stay at the top level (as before); the consumer's are under
        # "consumer"; "settings" has every row with its env name and source.
        print_json(
            {
                **{row["name"]: row["value"] for row in groups["producer"]},
                "consumer": {row["name"]: row["value"] for row in groups["consumer"]},
                "settings": [
                    {"side": side, **row} for side, rows in groups.items() for row in rows
                ],
            }
        )
        return 0
    titles = {
        "producer": "producer (revoke, status, topics, heartbeat, serve-api)",
        "consumer": "consumer (consume)",
    }
    for group, rows in groups.items():
        print(f"# {titles[group]}")
        for row in rows:
            value = json.dumps(row["value"], default=str)
            print(f"{row['name']} = {value}    [{row['source']}: ${row['env']}]")
            print(f"    {row['description']}")
    return 0
