"""``revocast ssf``: the Shared Signals receiver's poll loop and stream management.

    revocast ssf poll                                  # poll every poll transmitter until stopped
    revocast ssf poll --transmitter okta --once        # one round, print what happened
    revocast ssf stream create --transmitter okta      # prints the stream (put its id in config)
    revocast ssf stream get|update|delete --transmitter okta [--stream-id ID]
    revocast ssf stream status --transmitter okta [--set paused --reason "maintenance"]
    revocast ssf stream verify --transmitter okta      # ask for a verification event
    revocast ssf status                                # what this receiver knows (Redis)
    revocast ssf config                                # effective SSF settings, secrets redacted

Transmitters come from ``REVOCAST_SSF_TRANSMITTERS`` (or ``..._FILE``); the poll loop publishes
with the producer's settings (``REVOCAST_SIGNING_KEY_FILE``, Kafka) and keeps pending
acknowledgements in Redis (``REVOCAST_SSF_REDIS_URL``). It stops cleanly on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType
from typing import Any

from producer.ingress.ssf import (
    PollClient,
    SetReceiver,
    SsfSettings,
    SsfStore,
    StreamClient,
    TransmitterConfig,
)
from producer.publisher import RevocationPublisher
from revocast.commands import Subparsers
from revocast.options import print_json, producer_settings
from schemas import ConfigError

__all__ = ["register"]


def register(subparsers: Subparsers) -> None:
    ssf = subparsers.add_parser("ssf", help="Shared Signals (SSF/CAEP/RISC) receiver")
    sub = ssf.add_subparsers(dest="ssf_command", required=True, metavar="SUBCOMMAND")

    poll = sub.add_parser("poll", help="poll transmitters (RFC 8936) and publish their SETs")
    poll.add_argument(
        "--transmitter", action="append", metavar="NAME", help="default: every poll transmitter"
    )
    poll.add_argument("--once", action="store_true", help="one poll round, then exit")
    poll.set_defaults(handler=run_poll, log_level="INFO")

    stream = sub.add_parser("stream", help="manage the stream at a transmitter (SSF 1.0 §8)")
    actions = stream.add_subparsers(dest="stream_action", required=True, metavar="ACTION")
    for name, text in (
        ("create", "create the stream (push: registers this receiver's URL and token)"),
        ("get", "read the stream's configuration"),
        ("update", "change description / events requested (PATCH)"),
        ("delete", "delete the stream"),
        ("status", "read (or --set) the stream's status"),
        ("verify", "ask the transmitter for a verification event"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--transmitter", required=True, metavar="NAME")
        action.add_argument("--stream-id", metavar="ID", help="default: the configured one")
        if name in ("create", "update"):
            action.add_argument("--description", metavar="TEXT")
            action.add_argument(
                "--events", nargs="+", metavar="URI", help="events_requested (default: mapped)"
            )
        if name == "status":
            action.add_argument("--set", choices=("enabled", "paused", "disabled"))
            action.add_argument("--reason", metavar="TEXT")
        action.set_defaults(handler=run_stream)

    status = sub.add_parser("status", help="each transmitter's stream status as seen here")
    status.set_defaults(handler=run_status)
    config = sub.add_parser("config", help="effective SSF settings, secrets redacted")
    config.set_defaults(handler=run_config)


def _poll_transmitters(ssf: SsfSettings, names: list[str] | None) -> list[TransmitterConfig]:
    chosen = [ssf.transmitter(n) for n in names] if names else ssf.all_transmitters()
    polled = [t for t in chosen if t.delivery == "poll"]
    if not polled:
        raise ConfigError(
            "no poll transmitter configured: set delivery to poll in REVOCAST_SSF_TRANSMITTERS"
        )
    return polled


def run_poll(args: argparse.Namespace) -> int:
    ssf = SsfSettings.load()
    targets = _poll_transmitters(ssf, args.transmitter)
    settings = producer_settings(args)
    store = SsfStore.from_url(ssf.redis_url, ssf.key_prefix)
    with RevocationPublisher.from_settings(settings) as publisher:
        receiver = SetReceiver(ssf, store, lambda: publisher)
        clients = [PollClient(receiver, t) for t in targets]
        try:
            if args.once:
                for client in clients:
                    result = client.poll_once()
                    print_json({"transmitter": client.config.name, **vars(result)})
                return 0
            stop = threading.Event()

            def on_term(signum: int, frame: FrameType | None) -> None:
                stop.set()

            previous = signal.signal(signal.SIGTERM, on_term)
            threads = [
                threading.Thread(target=c.run, args=(stop,), name=f"ssf-poll-{c.config.name}")
                for c in clients
            ]
            for t in threads:
                t.start()
            print(f"polling {', '.join(c.config.name for c in clients)}", flush=True)
            try:
                while any(t.is_alive() for t in threads):
                    for t in threads:
                        t.join(0.5)
            except KeyboardInterrupt:
                stop.set()
            finally:
                stop.set()
                for t in threads:
                    t.join(30)
                signal.signal(signal.SIGTERM, previous)
        finally:
            for client in clients:
                client.close()
            receiver.close()
            store.close()
    return 0


def run_stream(args: argparse.Namespace) -> int:
    ssf = SsfSettings.load()
    config = ssf.transmitter(args.transmitter)
    sid = args.stream_id
    with StreamClient(config, ssf) as client:
        out: Any
        if args.stream_action == "create":
            out = client.create(events_requested=args.events, description=args.description)
        elif args.stream_action == "get":
            out = client.get(sid)
        elif args.stream_action == "update":
            changes: dict[str, Any] = {}
            if args.description is not None:
                changes["description"] = args.description
            if args.events:
                changes["events_requested"] = args.events
            if not changes:
                raise ConfigError("stream update: give --description and/or --events")
            out = client.update(sid, **changes)
        elif args.stream_action == "delete":
            client.delete(sid)
            out = {"deleted": sid or config.stream_id}
        elif args.stream_action == "status":
            if args.set:
                out = client.set_status(args.set, reason=args.reason, stream_id=sid) or {
                    "accepted": args.set
                }
            else:
                out = client.status(sid)
            if not isinstance(out, dict):  # what the transmitter says is what `ssf status` shows
                store = SsfStore.from_url(ssf.redis_url, ssf.key_prefix)
                try:
                    store.set_status(config.name, out.status, out.reason)
                finally:
                    store.close()
        else:  # verify
            store = SsfStore.from_url(ssf.redis_url, ssf.key_prefix)
            receiver = SetReceiver(ssf, store, _no_publisher)
            try:
                state = receiver.new_verification_state(config.name)
                client.verify(state, stream_id=sid)
            finally:
                receiver.close()
                store.close()
            out = {
                "requested": True,
                "note": "the receiver marks the stream verified when the event arrives "
                "(revocast ssf status)",
            }
    print_json(out.model_dump(mode="json") if hasattr(out, "model_dump") else out)
    return 0


def _no_publisher() -> RevocationPublisher:
    raise ConfigError("a verification request publishes nothing")


def run_status(args: argparse.Namespace) -> int:
    ssf = SsfSettings.load()
    store = SsfStore.from_url(ssf.redis_url, ssf.key_prefix)
    try:
        out = []
        for t in ssf.all_transmitters():
            acks, errs = store.pending(t.name)
            out.append(
                {
                    "transmitter": t.name,
                    "issuer": t.issuer,
                    "delivery": t.delivery,
                    "enabled": t.enabled,
                    **store.status(t.name),
                    "pending_acks": len(acks),
                    "pending_set_errs": len(errs),
                }
            )
    finally:
        store.close()
    print_json(out)
    return 0


def run_config(args: argparse.Namespace) -> int:
    print_json(SsfSettings.load().redacted())
    return 0
