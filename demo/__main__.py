"""``make demo``: revocations propagating to three services, measured.

1. find Kafka and Redis (``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL``, else
   testcontainers, else the local launcher in ``devstack/``);
2. create isolated topics, an event-signing key (Ed25519) and a demo identity
   provider that issues JWTs;
3. start three services (``orders``, ``billing``, ``agents-gateway``), each a
   separate process: a revocast consumer behind an HTTP API with the revocation
   middleware, plus a heartbeat;
4. show that every token works everywhere, publish one revocation of each kind,
   wait until each is in force in every service (from the services' receipts),
   and show every service now refusing the token; then the same from an identity
   provider: one SCIM deactivation and one CAEP session-revoked SET, timed from the
   IdP's request; then a burst of session revocations for percentiles;
5. print the per-service propagation latency, and stop everything.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from rich.console import Console

from bench.ingress import IngressServer, RecordingPublisher, ScimIdp, SsfTransmitter
from bench.tables import Col, num, print_table
from demo.service import IDP_ISSUER
from devstack import DevstackError, resolve_services
from producer import HeartbeatEmitter, ReceiptTracker, ensure_topics
from schemas import (
    ClaimsChanged,
    CredentialKind,
    CredentialRotated,
    KeySet,
    RevocastError,
    SessionRevoked,
    SigningKey,
    Subject,
    SubjectOffboarded,
    TokenRevoked,
    TopicNames,
    in_seconds,
)

SERVICES = ("orders", "billing", "agents-gateway")
# Tables fit the terminal; piped (a CI log, | tee) they become plain rows (bench.tables).
console = Console()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class IdentityProvider:
    """Issues EdDSA JWTs, as a real IdP would; its public JWK is all services need."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.kid = "idp-2026-11"

    def public_jwk(self) -> dict[str, object]:
        jwk = OKPAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": "EdDSA"}

    def issue(self, sub: str, **claims: object) -> str:
        now = int(time.time())
        body = {"iss": IDP_ISSUER, "sub": sub, "iat": now, "exp": now + 900, **claims}
        return jwt.encode(body, self.key, algorithm="EdDSA", headers={"kid": self.kid})


@contextmanager
def service_processes(
    env: dict[str, str], idp_jwk: Path, workdir: Path
) -> Iterator[dict[str, str]]:
    """Start the three services; yield name -> base URL; stop them on exit."""
    procs: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    try:
        for name in SERVICES:
            port = free_port()
            log = (workdir / f"{name}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "demo.service",
                        "--service",
                        name,
                        "--port",
                        str(port),
                        "--idp-jwk",
                        str(idp_jwk),
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            urls[name] = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        pending = set(SERVICES)
        while pending and time.monotonic() < deadline:
            for name, proc in zip(SERVICES, procs, strict=True):
                if proc.poll() is not None:
                    tail = (workdir / f"{name}.log").read_text()[-800:]
                    raise RuntimeError(f"service {name} exited ({proc.returncode}): {tail}")
            for name in list(pending):
                try:
                    if httpx.get(f"{urls[name]}/healthz", timeout=1).status_code == 200:
                        pending.discard(name)
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        if pending:
            raise RuntimeError(f"services not ready after 60 s: {', '.join(sorted(pending))}")
        yield urls
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def statuses(urls: dict[str, str], token: str) -> str:
    """Each service's answer to the token: ``200 200 200``, ``401 401 401 (invalid_token)``."""
    headers = {"Authorization": f"Bearer {token}"}
    answers = [httpx.get(f"{u}/whoami", headers=headers, timeout=5) for u in urls.values()]
    codes = " ".join(str(r.status_code) for r in answers)
    challenge = answers[0].headers.get("www-authenticate", "")
    error = challenge.partition('error="')[2].partition('"')[0]
    return f"{codes} ({error})" if error else codes


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def from_idp(
    stack: ExitStack,
    bootstrap: str,
    redis_url: str,
    topics: TopicNames,
    publisher: RecordingPublisher,
    tracker: ReceiptTracker,
    idp: IdentityProvider,
    urls: dict[str, str],
) -> None:
    """One SCIM deactivation and one CAEP session-revoked SET, each from the IdP's request
    to in force in every service (200 -> 401)."""
    with console.status("starting the SCIM and SSF endpoints (revocast serve-api)..."):
        server = stack.enter_context(IngressServer(bootstrap, topics, publisher, redis_url))
        scim = ScimIdp(server, publisher)
        stack.callback(scim.close)
        ssf = SsfTransmitter(server, publisher)
        stack.callback(ssf.close)
        dana_user = scim.provision("dana")
    tokens = {
        "dana": idp.issue("dana", sid="sess-dana-1"),
        "erin": idp.issue("erin", sid="sess-erin-phone"),
    }
    before = {who: statuses(urls, token) for who, token in tokens.items()}
    requests = [
        ("dana", "SCIM PATCH /Users/{id} active=false", scim.deactivate(dana_user, "dana")),
        ("erin", "SSF push: CAEP session-revoked", ssf.session_revoked("erin", "sess-erin-phone")),
    ]
    rows = []
    for who, label, request in requests:
        if len(request.published) != 1:
            raise RuntimeError(f"{label} published {len(request.published)} events, not one")
        published = request.published[0]
        in_force = tracker.wait_in_force(published.event_id, list(SERVICES), timeout=30)
        from_request_ms = (published.published_at_ns - request.sent_ns) / 1e6 + in_force.latency_ms
        rows.append([
            f"{label} ({who})", published.event_type, f"{request.status}",
            num(request.answer_ms), num(from_request_ms), before[who],
            statuses(urls, tokens[who]),
        ])
    print_table(
        console,
        "From the identity provider: request -> in force in all three services",
        [Col("IdP request"), Col("event"), Col("answer"), Col("answered after", "ms"),
         Col("in force everywhere after", "ms"), Col("HTTP before"), Col("HTTP after")],
        rows,
        caption="Both measured from the moment the IdP's request left. In force: HTTP, "
        "validation, signing, Kafka's acknowledgement, propagation, apply. The answer waits "
        "for Kafka's acknowledgement and then for the endpoint's own store, so the services "
        "may have applied the revocation before the IdP hears back.",
    )


def run(burst: int) -> None:
    with ExitStack() as stack:
        services = stack.enter_context(resolve_services())
        console.print(
            f"[bold]Kafka[/] {services.kafka_version} at {services.kafka_bootstrap} "
            f"({services.source}); [bold]Redis[/] at {services.redis_url}"
        )
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="revocast-demo-")))
        prefix = f"demo-{uuid.uuid4().hex[:8]}"
        topics = TopicNames.prefixed(prefix)
        ensure_topics(services.kafka_bootstrap, topics, partitions=3)

        signer = SigningKey.generate("events-2026-11")
        (workdir / "events.jwks.json").write_text(json.dumps(KeySet.of([signer]).to_jwks()))
        idp = IdentityProvider()
        (workdir / "idp.jwk.json").write_text(json.dumps(idp.public_jwk()))
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": services.kafka_bootstrap,
            "REDIS_URL": services.redis_url,
            "REVOCAST_TOPIC_PREFIX": prefix,
            "REVOCAST_JWKS": str(workdir / "events.jwks.json"),
            "REVOCAST_LOG_LEVEL": "WARNING",
        }
        with console.status("starting three services (separate processes)..."):
            urls = stack.enter_context(service_processes(env, workdir / "idp.jwk.json", workdir))
        tracker = stack.enter_context(ReceiptTracker(services.kafka_bootstrap, topics))
        # A RevocationPublisher that remembers what it published: the SCIM and SSF endpoints
        # below publish through it, which ties each IdP request to its event.
        publisher = stack.enter_context(
            RecordingPublisher(
                services.kafka_bootstrap, topics, signer, issuer="demo", tracker=tracker
            )
        )
        heartbeat = HeartbeatEmitter(publisher, interval=1.0, emitter="demo-heartbeat")
        heartbeat.start()
        stack.callback(heartbeat.stop)

        alice = Subject(id="alice", kind="human")
        ci_bot = Subject(id="svc-ci-deployer", kind="service_account")
        agent = Subject(id="agent-7", kind="ai_agent")
        carol = Subject(id="carol", kind="human")
        mallory_client = Subject(id="client-legacy-sync", kind="service_account")
        tokens = {
            "alice (session)": idp.issue("alice", sid="sess-alice-laptop"),
            "svc-ci-deployer (token)": idp.issue("svc-ci-deployer", jti="tok-ci-1"),
            "agent-7 acting for bob": idp.issue("bob", sid="sess-bob", act={"sub": "agent-7"}),
            "carol (role change)": idp.issue("carol", roles=["admin"]),
            "legacy-sync client": idp.issue("dave", azp="client-legacy-sync"),
        }
        later, now = in_seconds(900), datetime.now(UTC) + timedelta(seconds=1)
        revocations = [
            (
                "alice (session)",
                SessionRevoked(
                    subject=alice,
                    session_id="sess-alice-laptop",
                    expires_at=later,
                    reason="laptop stolen",
                ),
            ),
            (
                "svc-ci-deployer (token)",
                TokenRevoked(
                    subject=ci_bot, jti="tok-ci-1", expires_at=later, reason="leaked in CI log"
                ),
            ),
            (
                "agent-7 acting for bob",
                SubjectOffboarded(
                    subject=agent, not_before=now, expires_at=later, reason="agent misbehaving"
                ),
            ),
            (
                "carol (role change)",
                ClaimsChanged(subject=carol, changed_at=now, claims=("roles",), expires_at=later),
            ),
            (
                "legacy-sync client",
                CredentialRotated(
                    subject=mallory_client,
                    credential_id="client-legacy-sync",
                    credential_kind=CredentialKind.CLIENT,
                    not_before=now,
                    expires_at=later,
                ),
            ),
        ]

        before = {label: statuses(urls, tok) for label, tok in tokens.items()}
        rows = []
        for label, event in revocations:
            handle = publisher.revoke(event)
            in_force = handle.wait_in_force(services=list(SERVICES), timeout=30)
            after = statuses(urls, tokens[label])
            rows.append([
                label,
                event.type,
                *(num(in_force.services[s].first_ms) for s in SERVICES),
                num(in_force.latency_ms),
                before[label],
                after,
            ])
        print_table(
            console,
            "One revocation of each kind: publish -> applied in each service",
            [Col("token"), Col("event"), *(Col(s, "ms") for s in SERVICES),
             Col("in force everywhere", "ms"), Col("HTTP before"), Col("HTTP after")],
            rows,
        )

        from_idp(stack, services.kafka_bootstrap, services.redis_url, topics, publisher, tracker,
                 idp, urls)

        latencies: dict[str, list[float]] = {s: [] for s in SERVICES}
        everywhere: list[float] = []
        with console.status(f"a burst of {burst} session revocations at ~100/s..."):
            handles = []
            for i in range(burst):
                handles.append(
                    publisher.revoke(
                        SessionRevoked(
                            subject=Subject(id=f"user-{i % 50}", kind="human"),
                            session_id=f"burst-{i}",
                            expires_at=later,
                        )
                    )
                )
                time.sleep(0.01)
            for h in handles:
                in_force = h.wait_in_force(services=list(SERVICES), timeout=30)
                everywhere.append(in_force.latency_ms)
                for s in SERVICES:
                    latencies[s].append(in_force.services[s].first_ms)
        burst_rows = [
            [s, num(percentile(v, 50)), num(percentile(v, 99)), num(max(v))]
            for s, v in ((s, latencies[s]) for s in SERVICES)
        ]
        burst_rows.append([
            "in force everywhere",
            num(percentile(everywhere, 50)),
            num(percentile(everywhere, 99)),
            num(max(everywhere)),
        ])
        print_table(
            console,
            f"Burst: {burst} session revocations at ~100/s, publish -> applied",
            [Col("service"), Col("p50", "ms"), Col("p99", "ms"), Col("max", "ms")],
            burst_rows,
        )
        console.print("stopping services and the stack...")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--burst", type=int, default=200, help="session revocations in the burst")
    args = parser.parse_args(argv)
    if not 1 <= args.burst <= 10_000:
        parser.error("--burst must be between 1 and 10000")
    try:
        run(args.burst)
    except (DevstackError, RevocastError, RuntimeError) as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
