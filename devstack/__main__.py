"""``python -m devstack fetch|up|run -- CMD...`` - run from the repository root."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from types import FrameType

from devstack.launcher import (
    DevstackError,
    KafkaBroker,
    RedisServer,
    _env_port,
    ensure_kafka_jars,
    resolve_services,
)

PROG = "python -m devstack"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Local Kafka (KRaft) + Redis for revocast, without Docker.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fetch = sub.add_parser("fetch", help="download the Kafka jars into the cache (Maven)")
    fetch.add_argument(
        "--refresh", action="store_true", help="run Maven even when the cache is complete"
    )

    up = sub.add_parser("up", help="start Kafka and Redis, print their addresses, wait for Ctrl-C")
    up.add_argument(
        "--kafka-port",
        type=int,
        default=None,
        help="broker port (default: $REVOCAST_KAFKA_PORT, else a free one)",
    )
    up.add_argument(
        "--redis-port",
        type=int,
        default=None,
        help="redis port (default: $REVOCAST_REDIS_PORT, else a free one)",
    )
    up.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the broker (default 60)"
    )

    run = sub.add_parser(
        "run",
        help="start the stack (env vars, testcontainers or local), run CMD with "
        "KAFKA_BOOTSTRAP_SERVERS and REDIS_URL set, stop the stack, exit with CMD's code",
    )
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    return parser


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


def _up(kafka_port: int | None, redis_port: int | None, timeout: float) -> int:
    if kafka_port is None:
        kafka_port = _env_port("REVOCAST_KAFKA_PORT")
    if redis_port is None:
        redis_port = _env_port("REVOCAST_REDIS_PORT")
    with _sigterm_as_interrupt():
        try:
            with (
                KafkaBroker(port=kafka_port, start_timeout=timeout) as kafka,
                RedisServer(port=redis_port) as redis,
            ):
                print(f"KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap}")
                print(f"REDIS_URL={redis.url}")
                print(
                    f"# kafka {kafka.version} started in {kafka.start_seconds:.1f} s "
                    f"(log: {kafka.log_path}); redis {redis.version or '?'}; "
                    "Ctrl-C or SIGTERM stops both",
                    flush=True,
                )
                while kafka.running and redis.running:
                    time.sleep(0.5)
                which = "kafka broker" if not kafka.running else "redis-server"
                raise DevstackError(f"{which} stopped on its own: see {kafka.log_path}")
        except KeyboardInterrupt:
            print("# stopped", file=sys.stderr)
            return 0


def _run(argv: Sequence[str]) -> int:
    command = list(argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise DevstackError(f"nothing to run: use `{PROG} run -- CMD [ARGS...]`")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "fetch":
            return _fetch(args.refresh)
        if args.command == "up":
            return _up(args.kafka_port, args.redis_port, args.timeout)
        return _run(args.argv)
    except DevstackError as exc:
        print(f"devstack: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
