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

Configuration comes from the environment (``REVOCAST_*``, ``KAFKA_BOOTSTRAP_SERVERS``;
see ``print-config``); a few global flags override it. Exit codes: 0 success, 1 a
revocast error (``revocast: error: <message>``, no traceback), 2 bad arguments,
130 interrupted. Every command that talks to Kafka gives up within the configured
connect/delivery timeouts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from producer.exceptions import NotInForceError
from producer.heartbeat import HeartbeatEmitter
from producer.publisher import RevocationPublisher
from producer.requests import REQUEST_TYPES, parse_request
from producer.settings import ProducerSettings, parse_duration
from producer.topics import TopicsReport, ensure_topics
from producer.tracker import EventStatus, InForce, ReceiptTracker
from schemas import (
    ConfigError,
    CredentialKind,
    KeySet,
    RevocastError,
    SigningKey,
    SubjectKind,
)

__all__ = ["build_parser", "main"]

PROG = "revocast"
log = logging.getLogger("revocast")


# --------------------------------------------------------------------------- argument types


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0 and <= 86400 seconds")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _time_arg(text: str) -> datetime:
    if text.strip().lower() == "now":
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-11-28T12:00:00Z) or 'now'"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no timezone: add Z or +hh:mm (times are compared across machines)"
        )
    return value


def _services_arg(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one service (comma-separated)")
    return names


def _uuid_arg(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an event id (a UUID)") from None


# --------------------------------------------------------------------------- parser


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
        type=_seconds_arg,
        metavar="S",
        help="seconds for the broker to acknowledge (default: $REVOCAST_DELIVERY_TIMEOUT or 10)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: Kafka client too)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # revoke
    revoke = sub.add_parser("revoke", help="publish a revocation")
    kinds = revoke.add_subparsers(dest="kind", required=True, metavar="KIND")
    helps = {
        "session": "end a session (every token with this sid)",
        "token": "reject one token (by jti)",
        "subject": "offboard a subject: reject every token issued before --not-before",
        "claims": "the subject's claims changed: older tokens are stale",
        "credential": "a signing key or client credential rotated",
    }
    for kind in REQUEST_TYPES:
        p = kinds.add_parser(kind, help=helps[kind])
        p.add_argument("--subject", required=True, metavar="ID", help="subject id (the sub claim)")
        p.add_argument(
            "--kind",
            dest="subject_kind",
            choices=[k.value for k in SubjectKind],
            default=SubjectKind.HUMAN.value,
            help="what the subject is (default: human)",
        )
        p.add_argument("--tenant", help="tenant of the subject")
        p.add_argument("--reason", help="free text for audit logs")
        expiry = p.add_mutually_exclusive_group()
        expiry.add_argument(
            "--expires-in",
            type=_duration_arg,
            metavar="DURATION",
            help="when the revoked credential expires anyway: 3600, 15m, 24h "
            "(default: $REVOCAST_DEFAULT_CREDENTIAL_LIFETIME)",
        )
        expiry.add_argument("--expires-at", type=_time_arg, metavar="TIME", help="ISO 8601 time")
        if kind == "session":
            p.add_argument("--session-id", required=True, metavar="SID")
        elif kind == "token":
            p.add_argument("--jti", required=True)
        elif kind == "subject":
            p.add_argument("--not-before", type=_time_arg, metavar="TIME", help="default: now")
        elif kind == "claims":
            p.add_argument("--changed-at", type=_time_arg, metavar="TIME", help="default: now")
            p.add_argument(
                "--claims", type=_services_arg, default=[], metavar="A,B", help="changed claims"
            )
        else:
            p.add_argument("--credential-id", required=True, metavar="ID")
            p.add_argument(
                "--credential-kind",
                required=True,
                choices=[k.value for k in CredentialKind],
                help="kid: a token-signing key; client_id: an OAuth client / agent credential",
            )
            p.add_argument("--not-before", type=_time_arg, metavar="TIME", help="default: now")
        p.add_argument(
            "--wait",
            type=_services_arg,
            metavar="SERVICES",
            help="wait until these services (comma-separated) applied it",
        )
        p.add_argument(
            "--timeout",
            type=_seconds_arg,
            metavar="S",
            help="seconds to wait with --wait (default: $REVOCAST_WAIT_TIMEOUT or 10)",
        )
        p.add_argument("--json", action="store_true", help="print JSON")

    # status
    status = sub.add_parser("status", help="which services applied an event, and when")
    status.add_argument("event_id", type=_uuid_arg, metavar="EVENT_ID")
    status.add_argument(
        "--services",
        type=_services_arg,
        metavar="SERVICES",
        help="services that must have applied it (default: $REVOCAST_EXPECTED_SERVICES)",
    )
    status.add_argument(
        "--wait", type=_seconds_arg, metavar="S", help="wait up to S seconds for --services"
    )
    status.add_argument(
        "--timeout",
        type=_seconds_arg,
        default=30.0,
        metavar="S",
        help="seconds to read the receipts topic (default 30)",
    )
    status.add_argument("--json", action="store_true", help="print JSON")

    # topics
    topics = sub.add_parser("topics", help="manage revocast's Kafka topics")
    tsub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    ensure = tsub.add_parser("ensure", help="create missing topics, check existing ones")
    ensure.add_argument("--partitions", type=_positive_int, help="default: $REVOCAST_PARTITIONS")
    ensure.add_argument("--replication-factor", type=_positive_int)
    ensure.add_argument("--min-insync-replicas", type=_positive_int)
    ensure.add_argument("--max-credential-lifetime", type=_duration_arg, metavar="DURATION")
    ensure.add_argument("--margin", type=_duration_arg, metavar="DURATION")
    ensure.add_argument("--receipts-retention", type=_duration_arg, metavar="DURATION")
    ensure.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    ensure.add_argument("--json", action="store_true", help="print JSON")

    # heartbeat
    hb = sub.add_parser("heartbeat", help="write heartbeats into every events partition")
    hb.add_argument("--interval", type=_seconds_arg, metavar="S", help="default 1")
    hb.add_argument("--duration", type=_seconds_arg, metavar="S", help="stop after S seconds")

    # consume
    consume = sub.add_parser("consume", help="run a revocast consumer for a service")
    consume.add_argument("--service", required=True, metavar="NAME")
    consume.add_argument("--instance", metavar="ID", help="instance name (default: host:pid)")
    consume.add_argument("--jwks", metavar="FILE_OR_URL", help="trusted keys (JWKS)")

    # keys
    keys = sub.add_parser("keys", help="signing keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    gen = ksub.add_parser("generate", help="generate an Ed25519 signing key")
    gen.add_argument("--kid", required=True, help="key id consumers will see")
    gen.add_argument("--out", required=True, type=Path, help="private JWK file to write (0600)")
    gen.add_argument("--jwks", type=Path, help="public JWKS file to write")
    gen.add_argument(
        "--add-to",
        type=Path,
        metavar="JWKS",
        help="existing JWKS to add the new public key to (rotation); written back to it "
        "unless --jwks is given",
    )
    gen.add_argument("--force", action="store_true", help="overwrite an existing --out file")

    # print-config
    pc = sub.add_parser("print-config", help="effective configuration, secrets redacted")
    pc.add_argument("--json", action="store_true", help="print JSON")

    # serve-api
    api = sub.add_parser("serve-api", help="run the HTTP API")
    api.add_argument("--host", help="default: $REVOCAST_API_HOST")
    api.add_argument("--port", type=int, help="default: $REVOCAST_API_PORT")
    return parser


# --------------------------------------------------------------------------- helpers


def _settings(args: argparse.Namespace) -> ProducerSettings:
    overrides: dict[str, Any] = {}
    if args.bootstrap_servers:
        overrides["bootstrap_servers"] = args.bootstrap_servers
    if args.topic_prefix is not None:
        overrides["topic_prefix"] = args.topic_prefix
    if args.delivery_timeout is not None:
        overrides["delivery_timeout"] = args.delivery_timeout
    return ProducerSettings.load(**overrides)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _in_force_lines(result: InForce) -> list[str]:
    lines = [f"in force everywhere asked after {result.latency_ms:.1f} ms:"]
    for name, svc in result.services.items():
        n = len(svc.instances)
        lines.append(
            f"  {name}: first {svc.first_ms:.1f} ms, last {svc.last_ms:.1f} ms "
            f"({n} instance{'s' if n != 1 else ''})"
        )
    return lines


def _status_lines(status: EventStatus, missing: list[str]) -> list[str]:
    if not status.services:
        return [f"{status.event_id}: no service has applied it (no receipts)"]
    lines = [
        f"{status.event_id} ({status.event_type}) published "
        f"{status.published_at.isoformat() if status.published_at else '?'}:"
    ]
    for name, svc in status.services.items():
        lines.append(f"  {name}: first {svc.first_ms:.1f} ms, last {svc.last_ms:.1f} ms")
        for inst in svc.instances:
            lines.append(
                f"    {inst.instance} [{inst.flavor}] applied {inst.applied_at.isoformat()} "
                f"(+{inst.latency_ms:.1f} ms)"
            )
    if missing:
        lines.append(f"  missing: {', '.join(missing)}")
    return lines


# --------------------------------------------------------------------------- commands


def _cmd_revoke(args: argparse.Namespace) -> int:
    settings = _settings(args)
    subject: dict[str, Any] = {"id": args.subject, "kind": args.subject_kind}
    if args.tenant:
        subject["tenant"] = args.tenant
    data: dict[str, Any] = {"subject": subject, "reason": args.reason}
    if args.expires_in is not None:
        data["expires_in"] = args.expires_in
    if args.expires_at is not None:
        data["expires_at"] = args.expires_at
    for name in ("session_id", "jti", "not_before", "changed_at", "credential_id"):
        value = getattr(args, name, None)
        if value is not None:
            data[name] = value
    if args.kind == "claims":
        data["claims"] = args.claims
    if args.kind == "credential":
        data["credential_kind"] = args.credential_kind
    event = parse_request(args.kind, data).to_event(
        default_lifetime=settings.default_credential_lifetime,
        max_lifetime=settings.max_credential_lifetime,
    )
    signer = settings.signing_key()
    timeout = args.timeout or settings.wait_timeout

    tracker: ReceiptTracker | None = None
    if args.wait:
        # Start reading receipts before publishing, so none can be missed.
        tracker = ReceiptTracker(
            settings.bootstrap_servers,
            settings.topics,
            start="end",
            connect_timeout=settings.connect_timeout,
            client_id=f"{settings.client_id}-tracker",
        ).start()
    try:
        with RevocationPublisher.from_settings(settings, signer=signer, tracker=tracker) as pub:
            revocation = pub.revoke(event)
        p = revocation.published
        out: dict[str, Any] = {
            "event_id": str(p.event_id),
            "type": p.event_type,
            "topic": p.topic,
            "partition": p.partition,
            "offset": p.offset,
            "published_at": p.published_at.isoformat(),
        }
        if not args.json:
            print(f"published {p.event_type} {p.event_id} to {p.topic}/{p.partition}@{p.offset}")
        if args.wait:
            try:
                result = revocation.wait_in_force(args.wait, timeout=timeout)
            except NotInForceError as exc:
                if args.json:
                    out["in_force"] = False
                    out["missing"] = list(exc.missing)
                    out["status"] = exc.status.model_dump(mode="json")
                    _print_json(out)
                raise
            if args.json:
                out["in_force"] = True
                out["in_force_result"] = result.model_dump(mode="json")
            else:
                print("\n".join(_in_force_lines(result)))
        if args.json:
            _print_json(out)
    finally:
        if tracker is not None:
            tracker.stop()
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    expected = args.services if args.services is not None else settings.expected_services
    with ReceiptTracker(
        settings.bootstrap_servers,
        settings.topics,
        start="beginning",
        only=[args.event_id],
        connect_timeout=settings.connect_timeout,
        client_id=f"{settings.client_id}-status",
    ) as tracker:
        tracker.catch_up(timeout=args.timeout)
        if expected and args.wait:
            with contextlib.suppress(NotInForceError):  # reported below as missing
                tracker.wait_in_force(args.event_id, expected, timeout=args.wait)
        status = tracker.status(args.event_id)
    missing = status.missing(expected) if expected else []
    if args.json:
        _print_json(
            {
                "status": status.model_dump(mode="json"),
                "expected": expected,
                "missing": missing,
                "in_force": (not missing) if expected else None,
            }
        )
    else:
        print("\n".join(_status_lines(status, missing)))
    if missing:
        raise NotInForceError(
            f"revocation {args.event_id} is not in force in {', '.join(missing)}",
            event_id=args.event_id,
            missing=missing,
            status=status,
        )
    return 0


def _report_json(report: TopicsReport) -> list[dict[str, Any]]:
    return [
        {
            "role": t.role,
            "name": t.name,
            "created": t.created,
            "partitions": t.partitions,
            "replication_factor": t.replication_factor,
            "retention_ms": t.retention_ms,
            "min_insync_replicas": t.min_insync_replicas,
            "warnings": list(t.warnings),
        }
        for t in report.topics
    ]


def _cmd_topics(args: argparse.Namespace) -> int:
    settings = _settings(args)
    rf = args.replication_factor or settings.replication_factor
    min_isr = args.min_insync_replicas or min(settings.min_insync_replicas, rf)
    report = ensure_topics(
        settings.bootstrap_servers,
        settings.topics,
        partitions=args.partitions or settings.partitions,
        replication_factor=rf,
        min_insync_replicas=min_isr,
        max_credential_lifetime=parse_duration(args.max_credential_lifetime)
        if args.max_credential_lifetime
        else settings.max_credential_lifetime,
        margin=parse_duration(args.margin) if args.margin else settings.retention_margin,
        receipts_retention=parse_duration(args.receipts_retention)
        if args.receipts_retention
        else settings.receipts_retention,
        timeout=settings.connect_timeout,
    )
    if args.json:
        _print_json({"ok": report.ok, "topics": _report_json(report)})
    else:
        for t in report.topics:
            retention = "forever" if t.retention_ms == -1 else f"{t.retention_ms} ms"
            print(
                f"{'created' if t.created else 'exists '} {t.name}: {t.partitions} partitions, "
                f"rf {t.replication_factor}, min ISR {t.min_insync_replicas}, retention {retention}"
            )
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    if args.strict and not report.ok:
        raise ConfigError(f"{len(report.warnings)} topic setting(s) need attention (see above)")
    return 0


def _cmd_heartbeat(args: argparse.Namespace) -> int:
    settings = _settings(args)
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


def _cmd_consume(args: argparse.Namespace) -> int:
    # revocast is the app layer and may use both packages; import lazily so the other
    # commands never load the consumer side.
    from pydantic import ValidationError

    from consumers.service import run_service
    from consumers.settings import ConsumerSettings

    overrides: dict[str, Any] = {"service": args.service}
    if args.instance:
        overrides["instance"] = args.instance
    if args.jwks:
        overrides["jwks"] = args.jwks
    if args.bootstrap_servers:
        overrides["kafka_bootstrap_servers"] = args.bootstrap_servers
    if args.topic_prefix is not None:
        overrides["topic_prefix"] = args.topic_prefix
    try:
        consumer_settings = ConsumerSettings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ConsumerSettings.env_name(str(err["loc"][0])) if err["loc"] else "settings"
        raise ConfigError(f"{name}: {err['msg']}") from None
    # run_service logs its own failures and returns the consumer's documented exit code.
    return run_service(consumer_settings)


def _write_private(path: Path, data: dict[str, Any], force: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists: refusing to overwrite a private key (--force)") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}") from None
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.chmod(path, 0o600)


def _cmd_keys(args: argparse.Namespace) -> int:
    kid = args.kid.strip()
    if not kid:
        raise ConfigError("--kid must not be empty")
    jwks: dict[str, Any] = {"keys": []}
    if args.add_to is not None:
        try:
            jwks = json.loads(args.add_to.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read JWKS {args.add_to}: {exc}") from None
        existing = KeySet.from_jwks(jwks)  # validates every key
        if kid in existing:
            raise ConfigError(f"{args.add_to} already has a key with kid {kid!r}: pick a new kid")
    target = args.jwks or args.add_to
    if target is not None and target.resolve() == args.out.resolve():
        raise ConfigError("--out and the JWKS file must differ: the JWKS is public")
    key = SigningKey.generate(kid)
    _write_private(args.out, key.private_jwk(), args.force)
    print(f"wrote private key {kid!r} to {args.out} (mode 0600; keep it secret)")
    if target is not None:
        jwks = {**jwks, "keys": [*jwks.get("keys", []), key.public_jwk()]}
        target.write_text(json.dumps(jwks, indent=2) + "\n")
        kids = KeySet.from_jwks(jwks).kids
        print(f"wrote JWKS {target}: trusts {', '.join(kids)}")
    return 0


def _cmd_print_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    values = settings.redacted()
    if args.json:
        _print_json(values)
        return 0
    for name, env, description in ProducerSettings.describe():
        print(f"{name} = {json.dumps(values[name], default=str)}")
        print(f"    ${env}: {description}")
    return 0


def _cmd_serve_api(args: argparse.Namespace) -> int:
    from producer.api import serve

    serve(_settings(args), host=args.host, port=args.port)
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "revoke": _cmd_revoke,
    "status": _cmd_status,
    "topics": _cmd_topics,
    "heartbeat": _cmd_heartbeat,
    "consume": _cmd_consume,
    "keys": _cmd_keys,
    "print-config": _cmd_print_config,
    "serve-api": _cmd_serve_api,
}


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # kafka-python logs every refused connection at ERROR; our errors say it in one line.
    logging.getLogger("kafka").setLevel(logging.DEBUG if verbose >= 2 else logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``revocast`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return _COMMANDS[args.command](args)
    except RevocastError as exc:
        message = " ".join(str(exc).split())
        print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
