"""Run one consumer process: ``run_service(settings)`` or ``python -m consumers``.

:func:`run_service` builds the :class:`RevocationConsumer` (plus Redis shared
view/snapshots and a Prometheus endpoint when configured), runs it until SIGINT
or SIGTERM, then stops it cleanly: last snapshot saved, receipts and dead
letters flushed. Exit codes: 0 clean stop, 1 the consumer failed while running,
2 configuration error, 3 Kafka or Redis unavailable at start.

It is the body of ``revocast consume --service NAME``; standalone::

    REVOCAST_JWKS=jwks.json python -m consumers --service orders
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeAlias

from pydantic import ValidationError

from consumers.admin import serve_admin
from consumers.consumer import RevocationConsumer
from consumers.metrics import JsonFormatter, log_extra
from consumers.settings import ConsumerSettings
from consumers.state import RevocationState
from schemas import ConfigError, InfrastructureError, KeySet, SigningKey

if TYPE_CHECKING:
    from consumers.engines.faust import FaustRevocationConsumer

__all__ = ["build_consumer", "main", "run_service"]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_UNAVAILABLE = 0, 1, 2, 3

AnyConsumer: TypeAlias = "RevocationConsumer | FaustRevocationConsumer"
"""Either driver: the engines of :mod:`consumers.engines`, or the faust worker."""


def _configure_logging(settings: ConsumerSettings) -> None:
    root = logging.getLogger()
    if root.handlers:  # the host application configured logging: leave it alone
        return
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(settings.log_level)


def build_consumer(settings: ConsumerSettings, stack: ExitStack) -> AnyConsumer:
    """The consumer ``settings`` describe (Redis clients are closed by ``stack``)."""
    if settings.require_signature and not settings.jwks:
        raise ConfigError(
            "REVOCAST_JWKS is required while REVOCAST_REQUIRE_SIGNATURE is on "
            "(a JWKS file path or an http(s) URL)"
        )
    keys = KeySet.load(settings.jwks) if settings.jwks else None
    shared_view = snapshots = None
    if settings.redis_url and (settings.redis_shared_view or settings.redis_snapshots):
        from consumers.redis_store import (
            RedisRevocationStore,
            RedisSnapshotStore,
            connect,
        )

        client = connect(settings.redis_url)
        stack.callback(client.close)
        prefix = settings.redis_prefix
        if settings.redis_shared_view:
            shared_view = RedisRevocationStore(client, settings.service, prefix=prefix)
        if settings.redis_snapshots:
            snapshots = RedisSnapshotStore(client, settings.service, prefix=prefix)
    security = settings.kafka_security
    common: dict[str, Any] = {
        "instance_key": (
            SigningKey.from_file(settings.instance_key_file) if settings.instance_key_file else None
        ),
        "require_signature": settings.require_signature,
        "shared_view": shared_view,
        "snapshots": snapshots,
        "snapshot_interval": settings.snapshot_interval,
        "max_staleness": settings.max_staleness,
        "state": RevocationState(max_lifetime=settings.max_credential_lifetime),
        "connect_timeout": settings.kafka_connect_timeout,
    }
    where = (
        settings.kafka_bootstrap_servers,
        settings.topic_names(),
        settings.service,
        settings.instance,
        keys,
    )
    if settings.engine == "faust":  # its own driver: a faust worker in its own event loop
        from consumers.engines.faust import FaustRevocationConsumer

        return FaustRevocationConsumer(*where, security=security, **common)
    return RevocationConsumer(
        *where,
        engine=settings.engine,
        kafka_options=(
            security.to_confluent()
            if settings.engine == "confluent"
            else security.to_kafka_python()
        ),
        **common,
    )


def run_service(
    settings: ConsumerSettings,
    *,
    stop: threading.Event | None = None,
    on_start: Callable[[AnyConsumer], None] | None = None,
) -> int:
    """Run until SIGINT/SIGTERM (or ``stop`` is set); returns the exit code.

    ``on_start`` is called with the started consumer (``revocast consume`` watches its
    lifecycle through it). The metrics port, when set, also serves the read-only
    ``/revocast/inspect`` and ``/revocast/freshness`` endpoints (:mod:`consumers.admin`).
    """
    _configure_logging(settings)
    stop = stop if stop is not None else threading.Event()
    who = log_extra(service=settings.service, instance=settings.instance)
    with ExitStack() as stack:
        try:
            consumer = build_consumer(settings, stack)
            consumer.start()
        except ConfigError as exc:
            log.error("configuration error: %s", exc, extra=who)
            return EXIT_CONFIG
        except InfrastructureError as exc:
            log.error("cannot start: %s", exc, extra=who)
            return EXIT_UNAVAILABLE
        stack.callback(consumer.stop)
        if on_start is not None:
            on_start(consumer)
        if settings.metrics_port is not None:
            server, _thread = serve_admin(consumer, settings.metrics_host, settings.metrics_port)
            stack.callback(server.shutdown)
            log.info(
                "metrics on http://%s:%d/metrics, decisions on /revocast/inspect",
                settings.metrics_host,
                server.server_port,
                extra=who,
            )
        if threading.current_thread() is threading.main_thread():

            def on_signal(signum: int, _frame: FrameType | None) -> None:
                log.info("signal %s: stopping", signal.Signals(signum).name, extra=who)
                stop.set()

            for signum in (signal.SIGINT, signal.SIGTERM):
                previous: Any = signal.signal(signum, on_signal)
                stack.callback(signal.signal, signum, previous)
        log.info("revocation consumer running", extra=who)
        while not stop.wait(0.5):
            if consumer.error is not None:
                log.error("consumer failed: %s", consumer.error, extra=who)
                return EXIT_FAILED
        return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m consumers",
        description="Run a revocast consumer; every other setting comes from REVOCAST_* "
        "environment variables (see consumers.settings).",
    )
    parser.add_argument("--service", default=None, help="service name (or REVOCAST_SERVICE)")
    parser.add_argument("--instance", default=None, help="instance id (or REVOCAST_INSTANCE)")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = ConsumerSettings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        print(f"revocast consumer: setting {field}: {err['msg']}", file=sys.stderr)
        return EXIT_CONFIG
    return run_service(settings)


if __name__ == "__main__":
    sys.exit(main())
