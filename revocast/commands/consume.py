"""``revocast consume --service NAME``: run a revocast consumer for a service.

The lifecycle is logged in one line per change (:mod:`revocast.lifecycle`): connecting and
waiting for the topic, assigned, replaying with progress (a progress bar on a terminal),
ready, lagging, stale, dead-lettered. With ``--metrics-port`` (or
``REVOCAST_METRICS_PORT``) the process also answers ``/metrics`` and the read-only
``/revocast/inspect`` there (``revocast inspect`` asks it). Exit codes are the service's:
0 clean stop, 1 failed while running, 2 configuration error, 3 Kafka or Redis unavailable.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from revocast.commands import Subparsers
from revocast.options import consumer_settings
from schemas import ConfigError

__all__ = ["register"]

log = logging.getLogger("revocast.consume")


def register(subparsers: Subparsers) -> None:
    consume = subparsers.add_parser("consume", help="run a revocast consumer for a service")
    consume.add_argument("--service", required=True, metavar="NAME")
    consume.add_argument("--instance", metavar="ID", help="instance name (default: host-pid)")
    consume.add_argument(
        "--jwks", metavar="FILE_OR_URL", help="trusted event-signing keys (default: $REVOCAST_JWKS)"
    )
    consume.add_argument(
        "--engine",
        choices=("kafka-python", "confluent", "faust"),
        help="Kafka client: kafka-python (the reference), confluent (librdkafka, "
        "revocast[fast]) or faust (a faust-streaming worker) (default: $REVOCAST_ENGINE, "
        "else kafka-python)",
    )
    consume.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve /metrics and /revocast/inspect here (0: any free port; "
        "default: $REVOCAST_METRICS_PORT, unset: off)",
    )
    consume.set_defaults(handler=run, log_level="INFO")


def run(args: argparse.Namespace) -> int:
    # revocast is the app layer and may use both packages; import lazily so the other
    # commands never load the consumer side.
    from consumers.service import run_service
    from revocast.lifecycle import LifecycleWatcher, Watchable

    overrides: dict[str, Any] = {"service": args.service}
    if args.instance:
        overrides["instance"] = args.instance
    if args.jwks:
        overrides["jwks"] = args.jwks
    if args.engine:
        overrides["engine"] = args.engine
    if args.metrics_port is not None:
        overrides["metrics_port"] = args.metrics_port
    settings = consumer_settings(args, **overrides)
    if settings.require_signature and not settings.jwks:
        raise ConfigError(
            "no trusted keys: pass --jwks public.jwks.json or set REVOCAST_JWKS (a JWKS file "
            "or URL, the public half of `revocast keys generate`)"
        )
    log.info(
        "%s/%s: connecting to %s, waiting for topic %s (engine %s)",
        settings.service,
        settings.instance,
        settings.kafka_bootstrap_servers,
        settings.topic_names().events,
        settings.engine,
    )
    watchers: list[LifecycleWatcher] = []

    def on_start(consumer: Watchable) -> None:
        watchers.append(LifecycleWatcher(consumer, terminal=sys.stderr.isatty()).start())

    try:
        # run_service logs its own failures and returns the consumer's documented exit code.
        return run_service(settings, on_start=on_start)
    finally:
        for watcher in watchers:
            watcher.stop()
