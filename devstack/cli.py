"""The devstack commands fetch, up and run (``revocast dev ...`` or ``python -m devstack``).

    revocast dev fetch                          # the Kafka jars, once
    revocast dev up                             # one KRaft node + Redis, Ctrl-C stops
    revocast dev up --brokers 3                 # three nodes, topics RF 3, min ISR 2
    revocast dev up --secure                    # SASL_SSL (SCRAM-SHA-512), CA, ACLs
    revocast dev run -- pytest tests/           # CMD with KAFKA_BOOTSTRAP_SERVERS, REDIS_URL

Everything starts on free loopback ports in temporary folders that are removed on exit.
Errors are one line (``devstack: error: ...``) and exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from devstack.broker import DEFAULT_KAFKA_START_TIMEOUT, KafkaBroker
from devstack.cluster import DEFAULT_CLUSTER_START_TIMEOUT, KafkaCluster
from devstack.jars import ensure_kafka_jars
from devstack.launcher import resolve_services
from devstack.process import DevstackError, env_port
from devstack.redis_server import RedisServer
from devstack.secure import DEFAULT_SERVICES, IAM_USER, SecureSetup
from schemas import RevocastError, TopicNames

__all__ = ["add_commands", "main", "run_command"]

PROG = "python -m devstack"
# `up` is interactive: a loaded machine may take a minute to start a secured JVM, and
# failing then helps nobody. resolve_services() keeps its shorter default for tests.
UP_START_TIMEOUT = max(120.0, DEFAULT_KAFKA_START_TIMEOUT)


def _brokers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 9:
        raise argparse.ArgumentTypeError(f"{text!r} is not a broker count from 1 to 9")
    return value


def _services(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one service name")
    return names


def add_commands(sub: Any) -> None:
    """Add ``fetch``, ``up`` and ``run`` to an argparse subparsers object."""
    fetch = sub.add_parser("fetch", help="download the Kafka jars into the cache (Maven)")
    fetch.add_argument(
        "--refresh", action="store_true", help="run Maven even when the cache is complete"
    )

    up = sub.add_parser("up", help="start Kafka and Redis, print their addresses, wait for Ctrl-C")
    up.add_argument(
        "--brokers",
        type=_brokers,
        default=1,
        metavar="N",
        help="KRaft nodes (default 1; 3 gives topics RF 3 and min.insync.replicas 2)",
    )
    up.add_argument(
        "--secure",
        action="store_true",
        help="SASL_SSL with SCRAM-SHA-512 users, a generated CA and ACLs (iam writes events; "
        "services read events, write receipts and dead letters)",
    )
    up.add_argument(
        "--services",
        type=_services,
        default=list(DEFAULT_SERVICES),
        metavar="A,B",
        help="service principals svc-<name> to create with --secure (default: "
        f"{','.join(DEFAULT_SERVICES)})",
    )
    up.add_argument(
        "--topic-prefix",
        default="",
        metavar="PREFIX",
        help="prefix of the topics created (and ACL'd) with --brokers N>1 or --secure",
    )
    up.add_argument(
        "--kafka-port",
        type=int,
        default=None,
        help="broker port of a single node (default: $REVOCAST_KAFKA_PORT, else a free one)",
    )
    up.add_argument(
        "--redis-port",
        type=int,
        default=None,
        help="redis port (default: $REVOCAST_REDIS_PORT, else a free one)",
    )
    up.add_argument(
        "--timeout",
        type=float,
        default=None,
        help=f"seconds to wait for the broker(s) (default {UP_START_TIMEOUT:g}; "
        f"{DEFAULT_CLUSTER_START_TIMEOUT:g} for a cluster)",
    )

    run = sub.add_parser(
        "run",
        help="start the stack (env vars, testcontainers or local), run CMD with "
        "KAFKA_BOOTSTRAP_SERVERS and REDIS_URL set, stop the stack, exit with CMD's code",
    )
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")


def run_command(args: argparse.Namespace, prog: str = PROG) -> int:
    """Run the parsed ``fetch``/``up``/``run`` command; DevstackError propagates."""
    if args.devstack_command == "fetch":
        return _fetch(args.refresh)
    if args.devstack_command == "up":
        return _up(args)
    return _run(args.argv, prog)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so ``finally`` blocks stop what we started."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fetch(refresh: bool) -> int:
    begin = time.monotonic()
    libs = ensure_kafka_jars(offline_ok=not refresh)
    jars = len(list(libs.glob("*.jar")))
    print(f"{libs} ({jars} jars, {time.monotonic() - begin:.1f} s)")
    return 0


def _topic_names(prefix: str) -> TopicNames:
    return TopicNames.prefixed(prefix) if prefix else TopicNames()


def _ensure_topics(bootstrap: str, prefix: str, rf: int, options: dict[str, Any]) -> str:
    from producer.topics import ensure_topics

    report = ensure_topics(
        bootstrap,
        _topic_names(prefix),
        replication_factor=rf,
        min_insync_replicas=min(2, rf),
        timeout=30.0,
        kafka_options=options,
    )
    return ", ".join(f"{t.name} (RF {t.replication_factor})" for t in report.topics)


def _up(args: argparse.Namespace) -> int:
    kafka_port = args.kafka_port if args.kafka_port is not None else env_port("REVOCAST_KAFKA_PORT")
    redis_port = args.redis_port if args.redis_port is not None else env_port("REVOCAST_REDIS_PORT")
    if args.brokers > 1 and kafka_port is not None:
        raise DevstackError("--kafka-port names one node's port: drop it with --brokers N>1")
    with _sigterm_as_interrupt(), contextlib.ExitStack() as stack:
        try:
            security: SecureSetup | None = None
            if args.secure:
                tls_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="revocast-tls-"))
                material = Path(tls_dir)
                security = SecureSetup.generate(material, args.services)
            kafka: KafkaBroker | KafkaCluster
            if args.brokers == 1:
                kafka = KafkaBroker(
                    port=kafka_port,
                    start_timeout=args.timeout or UP_START_TIMEOUT,
                    security=security,
                )
            else:
                kafka = KafkaCluster(
                    args.brokers,
                    start_timeout=args.timeout or DEFAULT_CLUSTER_START_TIMEOUT,
                    security=security,
                )
            stack.enter_context(kafka)
            redis = stack.enter_context(RedisServer(port=redis_port))
            print(f"KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap}")
            print(f"REDIS_URL={redis.url}")
            granted = 0
            if args.brokers > 1 or security is not None:
                options = security.admin_options() if security else {}
                try:
                    created = _ensure_topics(
                        kafka.bootstrap, args.topic_prefix, min(3, args.brokers), options
                    )
                    if security is not None:
                        granted = security.grant(kafka.bootstrap, _topic_names(args.topic_prefix))
                except RevocastError as exc:
                    raise DevstackError(f"the topics could not be set up: {exc}") from None
                print(f"# topics: {created}")
            if security is not None:
                for key, value in security.env(IAM_USER).items():
                    print(f"{key}={value}")
                print(
                    f"# secure: {granted} ACLs; the lines above act as User:{IAM_USER}; every "
                    f"principal's password is in {security.directory / 'users.json'}"
                )
            print(
                f"# kafka {kafka.version}, {args.brokers} node(s), started in "
                f"{kafka.start_seconds or 0:.1f} s; redis {redis.version or '?'}; "
                "Ctrl-C or SIGTERM stops everything",
                flush=True,
            )
            while kafka.running and redis.running:
                time.sleep(0.5)
            which = "a kafka node" if not kafka.running else "redis-server"
            raise DevstackError(f"{which} stopped on its own")
        except KeyboardInterrupt:
            print("# stopped", file=sys.stderr)
            return 0


def _run(argv: Sequence[str], prog: str) -> int:
    command = list(argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise DevstackError(f"nothing to run: use `{prog} run -- CMD [ARGS...]`")
    with _sigterm_as_interrupt(), resolve_services() as services:
        env = {**os.environ, **services.env(), "REVOCAST_KAFKA_VERSION": services.kafka_version}
        print(
            f"# devstack ({services.source}): KAFKA_BOOTSTRAP_SERVERS={services.kafka_bootstrap} "
            f"REDIS_URL={services.redis_url} kafka {services.kafka_version}",
            file=sys.stderr,
            flush=True,
        )
        try:
            proc = subprocess.Popen(command, env=env)
        except OSError as exc:
            raise DevstackError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from None
        # Ctrl-C reaches CMD through the terminal's process group; we wait for it to exit
        # and then stop the stack. A SIGTERM sent to us alone is passed on to CMD.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        previous_term = signal.signal(signal.SIGTERM, lambda signum, frame: proc.terminate())
        try:
            code = proc.wait()
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous_term)
    return 128 - code if code < 0 else code


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description="Local Kafka (KRaft) + Redis for revocast, without Docker."
    )
    add_commands(parser.add_subparsers(dest="devstack_command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    try:
        return run_command(args, prog)
    except DevstackError as exc:
        print(f"devstack: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
