"""``revocast revoke KIND``: publish one signed revocation, optionally wait until it is in force.

The event is acknowledged by Kafka (acks=all) before anything is printed; with ``--wait`` (named
services) or ``--everywhere`` (every instance the watermarks show) the receipts topic is read
from before the publish, so no watermark can be missed.

The longest credential lifetime a revocation may guard is what the events topic retains minus
the margin: a lifetime above ``REVOCAST_MAX_CREDENTIAL_LIFETIME`` is accepted when the topic's
``retention.ms`` (set by ``revocast topics ensure --max-credential-lifetime``) covers it, and
refused, with the command that raises the retention, when it does not.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from producer.exceptions import NotInForceError
from producer.publisher import RevocationPublisher
from producer.requests import REQUEST_TYPES, RevokeRequest, parse_request
from producer.settings import ProducerSettings
from producer.topics import events_retention_ms, human_duration
from producer.tracker import InForce, ReceiptTracker
from revocast.argtypes import duration_arg, seconds_arg, services_arg, time_arg
from revocast.commands import Subparsers
from revocast.deadletters import DeadLetter, find_dead_letters, summary
from revocast.options import print_json, producer_settings
from schemas import ConfigError, CredentialKind, SubjectKind

__all__ = ["in_force_lines", "register"]

_HELPS = {
    "session": "end a session (every token with this sid)",
    "token": "reject one token (by jti)",
    "subject": "offboard a subject: reject every token issued before --not-before",
    "claims": "the subject's claims changed: older tokens are stale",
    "credential": "a signing key or client credential rotated",
}


def register(subparsers: Subparsers) -> None:
    revoke = subparsers.add_parser("revoke", help="publish a revocation")
    kinds = revoke.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind in REQUEST_TYPES:
        p = kinds.add_parser(kind, help=_HELPS[kind])
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
            type=duration_arg,
            metavar="DURATION",
            help="when the revoked credential expires anyway: 3600, 15m, 24h "
            "(default: $REVOCAST_DEFAULT_CREDENTIAL_LIFETIME)",
        )
        expiry.add_argument("--expires-at", type=time_arg, metavar="TIME", help="ISO 8601 time")
        if kind == "session":
            p.add_argument("--session-id", required=True, metavar="SID")
        elif kind == "token":
            p.add_argument("--jti", required=True)
        elif kind == "subject":
            p.add_argument("--not-before", type=time_arg, metavar="TIME", help="default: now")
        elif kind == "claims":
            p.add_argument("--changed-at", type=time_arg, metavar="TIME", help="default: now")
            p.add_argument(
                "--claims", type=services_arg, default=[], metavar="A,B", help="changed claims"
            )
        else:
            p.add_argument("--credential-id", required=True, metavar="ID")
            p.add_argument(
                "--credential-kind",
                required=True,
                choices=[k.value for k in CredentialKind],
                help="kid: a token-signing key; client_id: an OAuth client / agent credential",
            )
            p.add_argument("--not-before", type=time_arg, metavar="TIME", help="default: now")
        wait = p.add_mutually_exclusive_group()
        wait.add_argument(
            "--wait",
            type=services_arg,
            metavar="SERVICES",
            help="wait until every instance of these services (comma-separated) applied it",
        )
        wait.add_argument(
            "--everywhere",
            action="store_true",
            help="wait until every instance of every service (from their watermarks) applied "
            "it; a silent instance keeps it from being in force and is named",
        )
        p.add_argument(
            "--timeout",
            type=seconds_arg,
            metavar="S",
            help="seconds to wait with --wait (default: $REVOCAST_WAIT_TIMEOUT or 10)",
        )
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(handler=run)


def _advice(letters: list[DeadLetter]) -> str:
    reasons = {letter.reason for letter in letters}
    if "unknown_key" in reasons:
        return (
            ": add the signing key's public JWK to the services' JWKS (REVOCAST_JWKS), "
            "or sign with a key they trust (REVOCAST_SIGNING_KEY_FILE)"
        )
    if reasons & {"bad_signature", "missing_signature"}:
        return ": sign with a key the services trust (REVOCAST_SIGNING_KEY_FILE)"
    return ""


def in_force_lines(result: InForce) -> list[str]:
    services = ", ".join(result.services)
    lines = [f"in force in {services} {result.latency_ms:.1f} ms after it was published:"]
    if result.silent:
        lines.append(f"  silent, not counted: {', '.join(result.silent)}")
    for name, svc in result.services.items():
        n = len(svc.instances)
        lines.append(
            f"  {name}: first {svc.first_ms:.1f} ms, last {svc.last_ms:.1f} ms "
            f"({n} instance{'s' if n != 1 else ''})"
        )
    return lines


def _max_lifetime(settings: ProducerSettings, request: RevokeRequest) -> timedelta:
    """The configured longest lifetime, or what the events topic retains when that is more."""
    if request.expires_in is not None:
        wanted = timedelta(seconds=request.expires_in)
    elif request.expires_at is not None:
        wanted = request.expires_at - datetime.now(UTC)
    else:
        return settings.max_credential_lifetime
    if wanted <= settings.max_credential_lifetime:
        return settings.max_credential_lifetime
    name = settings.topics.events
    retention = events_retention_ms(
        settings.bootstrap_servers,
        settings.topics,
        timeout=settings.connect_timeout,
        kafka_options=settings.kafka_security.to_kafka_python(),
    )
    hours = f"{math.ceil(wanted.total_seconds() / 3600)}h"
    if retention is None:
        raise ConfigError(
            f"the events topic {name} does not exist: create it with "
            f"`revocast topics ensure --max-credential-lifetime {hours}`"
        )
    if retention < 0:  # retained forever
        return timedelta(days=36500)
    covered = timedelta(milliseconds=retention) - settings.retention_margin
    if covered >= wanted:
        return covered
    raise ConfigError(
        f"a credential living {human_duration(int(wanted.total_seconds() * 1000))} outlives "
        f"what {name} retains ({human_duration(retention)}, minus the "
        f"{human_duration(int(settings.retention_margin.total_seconds() * 1000))} margin): "
        "the topic would forget this revocation while the credential is still valid; raise it "
        f"with `revocast topics ensure --max-credential-lifetime {hours} --alter-retention`"
    )


def run(args: argparse.Namespace) -> int:
    settings = producer_settings(args)
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
    request = parse_request(args.kind, data)
    lifetime = _max_lifetime(settings, request)
    event = request.to_event(
        default_lifetime=settings.default_credential_lifetime, max_lifetime=lifetime
    )
    # The publisher caps expiries at the same lifetime the topic was found to retain.
    settings = settings.model_copy(update={"max_credential_lifetime": lifetime})
    signer = settings.signing_key()
    timeout = args.timeout or settings.wait_timeout

    tracker: ReceiptTracker | None = None
    waiting = bool(args.wait or args.everywhere)
    if waiting:
        # Start reading watermarks before publishing, so none can be missed.
        tracker = ReceiptTracker.from_settings(settings, start="end").start()
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
        if waiting:
            try:
                result = revocation.wait_in_force(args.wait or None, timeout=timeout)
            except NotInForceError as exc:
                letters = find_dead_letters(
                    settings.bootstrap_servers,
                    settings.topics,
                    since=p.published_at - timedelta(seconds=1),
                    source=f"{p.topic}/{p.partition}/{p.offset}",
                    timeout=settings.connect_timeout,
                )
                if args.json:
                    out["in_force"] = False
                    out["missing"] = list(exc.missing)
                    out["silent"] = list(exc.silent)
                    out["status"] = exc.status.model_dump(mode="json")
                    out["dead_letters"] = [asdict(letter) for letter in letters]
                    print_json(out)
                if not letters:
                    raise
                raise NotInForceError(
                    f"{exc}; {summary(letters)}{_advice(letters)}",
                    event_id=exc.event_id,
                    missing=exc.missing,
                    status=exc.status,
                    silent=exc.silent,
                    pending=exc.pending,
                ) from None
            if args.json:
                out["in_force"] = True
                out["in_force_result"] = result.model_dump(mode="json")
            else:
                print("\n".join(in_force_lines(result)))
        if args.json:
            print_json(out)
    finally:
        if tracker is not None:
            tracker.stop()
    return 0
