"""``revocast heartbeat``: a heartbeat into every events partition every interval.

Consumers measure their freshness by these beats; without them a privileged check answers
``stale_view`` once the view is older than its bound. Stops cleanly on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
from types import FrameType

from producer.heartbeat import HeartbeatEmitter
from producer.publisher import RevocationPublisher
from revocast.argtypes import seconds_arg
from revocast.commands import Subparsers
from revocast.options import producer_settings
from schemas import ConfigError

__all__ = ["register"]


def register(subparsers: Subparsers) -> None:
    hb = subparsers.add_parser("heartbeat", help="write heartbeats into every events partition")
    hb.add_argument("--interval", type=seconds_arg, metavar="S", help="default 1")
    hb.add_argument("--duration", type=seconds_arg, metavar="S", help="stop after S seconds")
    hb.set_defaults(handler=run, log_level="INFO")


def run(args: argparse.Namespace) -> int:
    settings = producer_settings(args)
    interval = args.interval or settings.heartbeat_interval
    with RevocationPublisher.from_settings(settings) as pub:
        emitter = HeartbeatEmitter(pub, interval=interval, emitter=settings.heartbeat_emitter)

        def on_term(signum: int, frame: FrameType | None) -> None:
            emitter.stop(timeout=0)

        previous = signal.signal(signal.SIGTERM, on_term)
        try:
            print(
                f"heartbeat every {interval:g} s into {len(pub.partitions())} partitions of "
                f"{pub.topics.events} as {emitter.emitter}",
                flush=True,
            )
            emitter.run(duration=args.duration)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    print(f"{emitter.beats} beats, {emitter.failures} failed", flush=True)
    if emitter.beats == 0 and emitter.failures:
        raise ConfigError(f"no heartbeat was acknowledged: {emitter.last_error}")
    return 0
