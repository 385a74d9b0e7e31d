"""``revocast dev up|run|fetch``: the local Kafka (+ Redis) stack, from any directory.

    revocast dev fetch                      # Kafka's jars from Maven Central, once
    revocast dev up                         # one KRaft node and Redis; Ctrl-C stops both
    revocast dev up --brokers 3             # three nodes; topics RF 3, min.insync.replicas 2
    revocast dev up --secure                # SASL_SSL + SCRAM-SHA-512, generated CA, ACLs
    revocast dev run -- pytest -q           # CMD with KAFKA_BOOTSTRAP_SERVERS and REDIS_URL set

The same commands as ``python -m devstack``; see :mod:`devstack.cli`. A launcher failure is
one line, ``revocast dev: error: ...``, exit 2.
"""

from __future__ import annotations

import argparse
import sys

from revocast.commands import Subparsers

__all__ = ["register"]

PROG = "revocast dev"


def register(subparsers: Subparsers) -> None:
    from devstack.cli import add_commands

    dev = subparsers.add_parser(
        "dev", help="local Kafka (1 or 3 nodes, optionally SASL_SSL + ACLs) and Redis"
    )
    add_commands(dev.add_subparsers(dest="devstack_command", required=True, metavar="ACTION"))
    dev.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from devstack import DevstackError
    from devstack.cli import run_command

    try:
        return run_command(args, PROG)
    except DevstackError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 2
