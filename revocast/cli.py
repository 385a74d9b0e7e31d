"""``revocast``: the one command line of revocast.

    revocast revoke session --subject u-1 --session-id s-42 --wait api,billing
    revocast revoke subject --subject svc-ci --kind service_account --reason offboarded
    revocast status 0b4c…                      # which services applied it, and when
    revocast topics ensure                     # create topics with safe retention
    revocast heartbeat --interval 1            # heartbeats into every partition
    revocast consume --service api             # run a consumer (consumers package)
    revocast keys generate --kid 2026-11 --out private.jwk.json --jwks public.jwks.json
    revocast print-config                      # effective settings, secrets redacted
    revocast serve-api                         # the HTTP API (uvicorn)
    revocast inspect --url http://127.0.0.1:9464 --subject alice   # what a service decides

Configuration comes from the environment (``REVOCAST_*``, ``KAFKA_BOOTSTRAP_SERVERS``;
see ``print-config``); a few global flags override it. Exit codes: 0 success, 1 a
revocast error (``revocast: error: <message>``, no traceback), 2 bad arguments,
130 interrupted. Every command that talks to Kafka gives up within the configured
connect/delivery timeouts.

Logging follows ``REVOCAST_LOG_LEVEL`` and ``REVOCAST_LOG_FORMAT`` (``text`` or ``json``);
``-v``/``-vv`` raise it. Without either, long-running commands (consume, heartbeat,
serve-api) log at INFO and one-shot commands at WARNING, so their output is the answer.

Each command lives in ``revocast.commands.<name>`` with ``register(subparsers)``; this module
only builds the parser from :data:`COMMAND_MODULES`, configures logging and turns errors into
exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from revocast.argtypes import seconds_arg
from schemas import ConfigError, RevocastError

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

PROG = "revocast"
log = logging.getLogger("revocast")

#: The command modules under ``revocast.commands``, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "revoke",
    "status",
    "topics",
    "heartbeat",
    "consume",
    "keys",
    "print_config",
    "serve_api",
    "inspect",
    "dev",
    "ssf",
    "scim",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Make a revocation take effect in every service within milliseconds, "
        "and prove how fast.",
    )
    parser.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT",
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument(
        "--topic-prefix",
        metavar="PREFIX",
        help="topic name prefix (default: $REVOCAST_TOPIC_PREFIX)",
    )
    parser.add_argument(
        "--delivery-timeout",
        type=seconds_arg,
        metavar="S",
        help="seconds for the broker to acknowledge (default: $REVOCAST_DELIVERY_TIMEOUT or 10)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: Kafka client too)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"revocast.commands.{name}").register(sub)
    return parser


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _configure_logging(verbose: int, default_level: str) -> None:
    """Logging from ``REVOCAST_LOG_LEVEL`` / ``REVOCAST_LOG_FORMAT`` (text or json), else
    ``-v``/``-vv``, else the command's default (INFO for long-running commands)."""
    env_level = os.environ.get("REVOCAST_LOG_LEVEL", "").strip().upper()
    env_format = os.environ.get("REVOCAST_LOG_FORMAT", "text").strip().lower() or "text"
    if env_level and env_level not in _LEVELS:
        raise ConfigError(f"REVOCAST_LOG_LEVEL: {env_level!r} is not one of {', '.join(_LEVELS)}")
    if env_format not in ("text", "json"):
        raise ConfigError(f"REVOCAST_LOG_FORMAT: {env_format!r} is not text or json")
    verbose_level = "INFO" if verbose == 1 else "DEBUG"
    level = verbose_level if verbose else env_level or default_level
    handler = logging.StreamHandler(sys.stderr)
    if env_format == "json":
        from consumers.metrics import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # kafka-python logs every refused connection at ERROR; our errors say it in one line.
    logging.getLogger("kafka").setLevel(logging.DEBUG if verbose >= 2 else logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``revocast`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        _configure_logging(args.verbose, getattr(args, "log_level", "WARNING"))
        return handler(args)
    except RevocastError as exc:
        message = " ".join(str(exc).split())
        print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
