"""``python -m consumers.faust_app``: the older entry point of the faust engine, kept as an alias.

The engine is :mod:`consumers.engines.faust`; the way to run it is
``revocast consume --engine faust`` (or ``REVOCAST_ENGINE=faust python -m consumers``),
with every ``REVOCAST_*`` setting. This alias keeps the older flags (``--bootstrap``,
``--loglevel``, ``--dump-state``) *and the older wire format*: one
:class:`schemas.Receipt` per applied event and no watermarks, for readers that
predate watermarks. Everything else comes from :class:`ConsumerSettings` (the
environment), so ``REVOCAST_JWKS`` and the Kafka security settings apply here too.

    python -m consumers.faust_app --service orders --bootstrap 127.0.0.1:9092 \\
        --jwks jwks.json [--instance orders-1] [--topic-prefix t-abc]

Exit codes as every consumer process: 0 clean stop (SIGINT/SIGTERM), 1 failed while
running, 2 configuration error, 3 Kafka unavailable at start.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from consumers.engines.faust import FaustRevocationConsumer
from consumers.settings import ConsumerSettings
from consumers.state import RevocationState
from schemas import ConfigError, InfrastructureError, KeySet, SigningKey

__all__ = ["FaustRevocationConsumer", "main"]

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m consumers.faust_app",
        description="Apply revocast events with a faust worker (older entry point: "
        "prefer `revocast consume --engine faust`).",
    )
    parser.add_argument("--service", default=None, help="service name (or REVOCAST_SERVICE)")
    parser.add_argument("--instance", default=None, help="instance id (default host-pid)")
    parser.add_argument(
        "--bootstrap", "--bootstrap-servers", dest="bootstrap", default=None,
        help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)",
    )  # fmt: skip
    parser.add_argument("--topic-prefix", default=None, help="use TopicNames.prefixed(PREFIX)")
    parser.add_argument("--jwks", default=None, help="JWKS file or URL (default $REVOCAST_JWKS)")
    parser.add_argument(
        "--allow-unsigned", action="store_true", help="accept unsigned events (development only)"
    )
    parser.add_argument("--max-staleness", type=float, default=None)
    parser.add_argument(
        "--dump-state", default=None, metavar="PATH",
        help="write the state snapshot as JSON to PATH on shutdown",
    )  # fmt: skip
    parser.add_argument("--loglevel", "--log-level", dest="loglevel", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "service": args.service,
            "instance": args.instance,
            "kafka_bootstrap_servers": args.bootstrap,
            "topic_prefix": args.topic_prefix,
            "jwks": args.jwks,
            "max_staleness": args.max_staleness,
            "log_level": args.loglevel,
        }.items()
        if value is not None
    }
    if args.allow_unsigned:
        overrides["require_signature"] = False
    try:
        settings = ConsumerSettings(engine="faust", **overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        print(f"revocast faust worker: setting {field}: {err['msg']}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if settings.require_signature and not settings.jwks:
            raise ConfigError("no trusted keys: pass --jwks or set REVOCAST_JWKS")
        consumer = FaustRevocationConsumer(
            settings.kafka_bootstrap_servers,
            settings.topic_names(),
            settings.service,
            settings.instance,
            KeySet.load(settings.jwks) if settings.jwks else None,
            require_signature=settings.require_signature,
            max_staleness=settings.max_staleness,
            state=RevocationState(max_lifetime=settings.max_credential_lifetime),
            per_event_receipts=True,
            watermarks=False,
            instance_key=(
                SigningKey.from_file(settings.instance_key_file)
                if settings.instance_key_file
                else None
            ),
            connect_timeout=settings.kafka_connect_timeout,
            security=settings.kafka_security,
        )
        consumer.start()
    except ConfigError as exc:
        print(f"revocast faust worker: {exc}", file=sys.stderr)
        return 2
    except InfrastructureError as exc:
        print(f"revocast faust worker: cannot start: {exc}", file=sys.stderr)
        return 3
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    code = 0
    while not stop.wait(0.5):
        if consumer.error is not None:
            log.error("faust worker failed: %s", consumer.error)
            code = 1
            break
    consumer.stop()
    if args.dump_state:
        path = Path(args.dump_state)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(consumer.state.snapshot()))
        tmp.replace(path)
    return code


if __name__ == "__main__":
    sys.exit(main())
