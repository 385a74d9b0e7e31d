"""End to end: CLI and HTTP API -> Kafka -> real consumers -> receipts -> "in force".

Two services run real :class:`consumers.RevocationConsumer` instances ("api" with two
replicas, "web" with one) against the session broker. Nothing is mocked.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate
from producer_testkit import ApiServer, cli_env, prefix_of, produce_raw, run_cli

from consumers import RevocationConsumer
from producer import ReceiptTracker, RevocationPublisher
from producer.api import create_app
from producer.settings import ProducerSettings
from schemas import (
    KeySet,
    SessionRevoked,
    SigningKey,
    Subject,
    TopicNames,
    in_seconds,
)

pytestmark = pytest.mark.integration

TOKENS = [
    {"name": "iam", "token": "iam-token-0123456789abcdef", "scopes": ["revoke:*", "status:read"]},
    {"name": "sessions-only", "token": "ses-token-0123456789abcdef", "scopes": ["revoke:session"]},
]
AUTH = {"Authorization": f"Bearer {TOKENS[0]['token']}"}
INSTANCES = [("api", "api-1"), ("api", "api-2"), ("web", "web-1")]


class Fleet:
    """Consumers for several services, all reading one topic set."""

    def __init__(self, consumers: list[RevocationConsumer]) -> None:
        self.consumers = consumers

    def revoked_sessions(self, sid: str) -> list[str]:
        return [
            f"{c.service}/{c.instance}" for c in self.consumers if c.state.is_session_revoked(sid)
        ]

    def dead_lettered(self) -> int:
        return sum(c.stats().dead_lettered for c in self.consumers)


@pytest.fixture
def fleet(kafka_bootstrap: str, topics: TopicNames, trusted_keys: KeySet) -> Iterator[Fleet]:
    with ExitStack() as stack:
        consumers = [
            stack.enter_context(
                RevocationConsumer(kafka_bootstrap, topics, service, instance, trusted_keys)
            )
            for service, instance in INSTANCES
        ]
        for consumer in consumers:
            assert consumer.wait_ready(30), f"{consumer.service}/{consumer.instance} not ready"
        yield Fleet(consumers)


def revocast_env(kafka_bootstrap: str, topics: TopicNames, key_file: Path) -> dict[str, str]:
    """The environment of a `revocast` command against these topics, signing with the key."""
    return cli_env(
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        REVOCAST_TOPIC_PREFIX=prefix_of(topics),
        REVOCAST_SIGNING_KEY_FILE=str(key_file),
    )


@pytest.fixture
def jwks_file(tmp_path: Path, trusted_keys: KeySet) -> Path:
    path = tmp_path / "public.jwks.json"
    path.write_text(json.dumps(trusted_keys.to_jwks()))
    return path


def test_cli_revocation_reaches_every_service_and_is_reported_in_force(
    kafka_bootstrap: str, topics: TopicNames, fleet: Fleet, key_file: Path
) -> None:
    env = revocast_env(kafka_bootstrap, topics, key_file)
    done = run_cli(
        "revoke", "session", "--subject", "alice", "--session-id", "s-cli",
        "--reason", "laptop stolen", "--wait", "api,web", "--timeout", "20", "--json",
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["type"] == "session.revoked"
    assert out["in_force"] is True
    result = out["in_force_result"]
    assert set(result["services"]) == {"api", "web"}
    for service in result["services"].values():
        assert 0 <= service["first_ms"] <= service["last_ms"] < 20_000
    assert result["latency_ms"] >= 0
    # The consumers' own view agrees: every instance has the session revoked.
    assert fleet.revoked_sessions("s-cli") == ["api/api-1", "api/api-2", "web/web-1"]

    # `status` reads the receipts topic afresh and names every instance.
    status = run_cli("status", out["event_id"], "--services", "api,web", "--wait", "10",
                     "--json", env=env)  # fmt: skip
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["in_force"] is True
    assert report["missing"] == []
    instances = {
        (name, inst["instance"])
        for name, svc in report["status"]["services"].items()
        for inst in svc["instances"]
    }
    assert instances >= set(INSTANCES)
    human = run_cli("status", out["event_id"], "--services", "api,web", env=env)
    assert human.returncode == 0
    assert "api-2" in human.stdout

    # A service nobody runs: the CLI says which one is missing, exit 1, no traceback.
    revocast = shutil.which("revocast", path=str(Path(sys.executable).parent))
    assert revocast is not None
    began = time.monotonic()
    missing = run_cli(
        "revoke", "subject", "--subject", "bob", "--kind", "ai_agent",
        "--wait", "api,billing", "--timeout", "3", env=env,
    )  # fmt: skip
    assert time.monotonic() - began < 30
    assert missing.returncode == 1
    assert "not in force in billing" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert missing.stdout.startswith("published subject.offboarded")


def test_api_revocation_reaches_every_service_and_reports_latencies(
    kafka_bootstrap: str, topics: TopicNames, fleet: Fleet, signing_key: SigningKey
) -> None:
    settings = ProducerSettings.load(
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=prefix_of(topics),
        api_tokens=TOKENS,
        expected_services=["api", "web"],
        delivery_timeout=5,
    )
    with (
        ApiServer(create_app(settings, signer=signing_key)) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        body = {"subject": {"id": "carol", "kind": "human"}, "jti": "tok-api", "expires_in": 600}
        resp = http.post("/v1/revocations/token", json=body, headers=AUTH)
        assert resp.status_code == 202, resp.text
        published = resp.json()
        assert published["type"] == "token.revoked"
        assert published["topic"] == topics.events
        assert published["status_url"].endswith(f"/v1/revocations/{published['event_id']}")

        status = http.get(published["status_url"], params={"wait": "15"}, headers=AUTH)
        assert status.status_code == 200
        answer = status.json()
        assert answer["in_force"] is True
        assert answer["missing"] == []
        assert answer["expected"] == ["api", "web"]
        assert answer["latency_ms"] >= 0
        api = answer["status"]["services"]["api"]
        assert {i["instance"] for i in api["instances"]} <= {"api-1", "api-2"}
        assert api["first_ms"] <= api["last_ms"]

        # Every instance rejects the token now.
        claims = {"sub": "carol", "jti": "tok-api", "iat": int(time.time()) - 5}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            verdicts = [c.state.check(claims).allowed for c in fleet.consumers]
            if not any(verdicts):
                break
            time.sleep(0.05)
        assert verdicts == [False, False, False]

        # Asking about a service that does not exist: not in force, named.
        other = http.get(
            published["status_url"], params={"services": "api,billing", "wait": "0.5"},
            headers=AUTH,
        )  # fmt: skip
        assert other.json()["in_force"] is False
        assert other.json()["missing"] == ["billing"]


def test_everywhere_means_every_instance_and_status_shows_the_fleet(
    kafka_bootstrap: str, topics: TopicNames, fleet: Fleet, key_file: Path, signing_key: SigningKey
) -> None:
    env = revocast_env(kafka_bootstrap, topics, key_file)
    done = run_cli(
        "revoke", "session", "--subject", "zoe", "--session-id", "s-everywhere",
        "--everywhere", "--timeout", "20", "--json", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["in_force"] is True
    services = out["in_force_result"]["services"]
    assert {(n, i["instance"]) for n, s in services.items() for i in s["instances"]} == set(
        INSTANCES
    )
    assert fleet.revoked_sessions("s-everywhere") == ["api/api-1", "api/api-2", "web/web-1"]

    # `revocast status` without an event: the fleet, one line per instance.
    table = run_cli("status", env=env)
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()[1:]]
    assert {(r[0], r[1]) for r in rows} == set(INSTANCES)
    assert all(r[2] == "kafka-python" and r[3] == "live" and r[4] == "yes" for r in rows), rows
    listed = run_cli("status", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    instances = json.loads(listed.stdout)["instances"]
    assert all(set(i["applied_through"]) == {"0", "1", "2"} for i in instances)
    assert all(i["lag"] is not None for i in instances)
    # With an event and no service list: every instance of the fleet must have applied it.
    one = run_cli("status", out["event_id"], "--json", env=env)
    assert one.returncode == 0, one.stderr
    report = json.loads(one.stdout)
    assert report["in_force"] is True
    assert report["expected"] == ["api", "web"]
    assert report["status"]["waiting"] == []

    # The HTTP status endpoint: the fleet, and "in force" over every instance of it.
    settings = ProducerSettings.load(
        bootstrap_servers=kafka_bootstrap, topic_prefix=prefix_of(topics), api_tokens=TOKENS
    )
    with (
        ApiServer(create_app(settings, signer=signing_key)) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        answer = http.get(
            f"/v1/revocations/{out['event_id']}", params={"wait": "10"}, headers=AUTH
        ).json()
        assert answer["in_force"] is True
        assert answer["expected"] == ["api", "web"]
        assert answer["silent"] == []
        seen = {(i["service"], i["instance"], i["state"]) for i in answer["fleet"]["instances"]}
        assert seen == {(s, i, "live") for s, i in INSTANCES}


def test_api_authentication_validation_and_openapi(
    kafka_bootstrap: str,
    topics: TopicNames,
    signing_key: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = ProducerSettings.load(
        bootstrap_servers=kafka_bootstrap, topic_prefix=prefix_of(topics), api_tokens=TOKENS
    )
    body = {"subject": {"id": "dave", "kind": "service_account"}, "session_id": "s-auth"}
    with (
        ApiServer(create_app(settings, signer=signing_key)) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        missing = http.post("/v1/revocations/session", json=body)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        unknown = http.post(
            "/v1/revocations/session",
            json=body,
            headers={"Authorization": "Bearer not-a-real-token-at-all"},
        )
        assert unknown.status_code == 401
        assert 'error="invalid_token"' in unknown.headers["www-authenticate"]
        narrow = {"Authorization": f"Bearer {TOKENS[1]['token']}"}
        forbidden = http.post("/v1/revocations/subject", json=body, headers=narrow)
        assert forbidden.status_code == 403
        assert 'scope="revoke:subject"' in forbidden.headers["www-authenticate"]
        assert http.get(f"/v1/revocations/{uuid.uuid4()}", headers=narrow).status_code == 403

        bad = http.post("/v1/revocations/session", json={"subject": {"id": "x", "kind": "human"}},
                        headers=narrow)  # fmt: skip
        assert bad.status_code == 422
        assert bad.json()["field"] == "session_id"
        nested = http.post(
            "/v1/revocations/session",
            json={"subject": {"id": "x", "kind": "cat"}, "session_id": "s"},
            headers=narrow,
        )
        assert nested.status_code == 422
        assert nested.json()["field"] == "subject.kind"
        assert http.post("/v1/revocations/session", content=b"{", headers=narrow).status_code == 400
        assert http.post("/v1/revocations/nuke", json=body, headers=AUTH).status_code == 404
        assert http.get("/v1/revocations/not-a-uuid", headers=AUTH).json()["field"] == "event_id"

        ok = http.post("/v1/revocations/session", json=body, headers=narrow)
        assert ok.status_code == 202
        unknown_event = http.get(f"/v1/revocations/{uuid.uuid4()}", headers=AUTH).json()
        assert unknown_event["status"]["services"] == {}
        assert unknown_event["in_force"] is None

        health = http.get("/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"

        document = http.get("/openapi.json").json()
        validate(document)  # a valid OpenAPI 3.1 document
        assert document["openapi"].startswith("3.1")
        assert set(document["paths"]) >= {
            "/v1/revocations/session",
            "/v1/revocations/credential",
            "/v1/revocations/{event_id}",
            "/healthz",
        }
        assert "SessionRevokeRequest" in document["components"]["schemas"]
    # Bearer tokens never reach the logs.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert TOKENS[0]["token"] not in logged
    assert TOKENS[1]["token"] not in logged


def test_forged_and_unsigned_events_never_change_any_view(
    kafka_bootstrap: str, topics: TopicNames, fleet: Fleet, signing_key: SigningKey
) -> None:
    forger = SigningKey.generate(signing_key.kid)  # claims our kid, wrong key
    stranger = SigningKey.generate("not-trusted")
    victim = Subject(id="erin", kind="human")

    def revoke(sid: str) -> SessionRevoked:
        return SessionRevoked(subject=victim, session_id=sid, expires_at=in_seconds(600))

    with RevocationPublisher(kafka_bootstrap, topics, forger) as pub:
        pub.publish(revoke("s-forged"))
    with RevocationPublisher(kafka_bootstrap, topics, stranger) as pub:
        pub.publish(revoke("s-stranger"))
    with RevocationPublisher(kafka_bootstrap, topics, None, allow_unsigned=True) as pub:
        pub.publish(revoke("s-unsigned"))
    produce_raw(kafka_bootstrap, topics.events, [(b"erin", b"garbage")])
    # A genuine event on the same subject (same partition, after the bad ones).
    with (
        ReceiptTracker(kafka_bootstrap, topics) as tracker,
        RevocationPublisher(kafka_bootstrap, topics, signing_key, tracker=tracker) as pub,
    ):
        marker = pub.revoke(revoke("s-genuine"))
        marker.wait_in_force(["api", "web"], timeout=20, min_instances=1)
        deadline = time.monotonic() + 10
        while len(fleet.revoked_sessions("s-genuine")) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert fleet.revoked_sessions("s-genuine") == ["api/api-1", "api/api-2", "web/web-1"]
    for sid in ("s-forged", "s-stranger", "s-unsigned"):
        assert fleet.revoked_sessions(sid) == [], sid
    assert fleet.dead_lettered() == 4 * len(INSTANCES)


def test_key_rotation_with_both_keys_trusted_loses_nothing(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    old, new = SigningKey.generate("2026-10"), SigningKey.generate("2026-11")
    overlap = KeySet.of([old, new])
    subject = Subject(id="frank", kind="service_account")
    events = [
        SessionRevoked(subject=subject, session_id=f"rot-{i}", expires_at=in_seconds(600))
        for i in range(40)
    ]
    with ExitStack() as stack:
        consumers = [
            stack.enter_context(RevocationConsumer(kafka_bootstrap, topics, s, i, overlap))
            for s, i in (("api", "api-1"), ("web", "web-1"))
        ]
        for consumer in consumers:
            assert consumer.wait_ready(30)
        tracker = stack.enter_context(ReceiptTracker(kafka_bootstrap, topics))
        pub = stack.enter_context(
            RevocationPublisher(kafka_bootstrap, topics, old, tracker=tracker)
        )
        first = [pub.revoke(e) for e in events[:20]]
        pub.rotate_key(new)
        second = pub.publish_many(events[20:])
        for rev in first:
            rev.wait_in_force(["api", "web"], timeout=20)
        for published in second:
            tracker.wait_in_force(published.event_id, ["api", "web"], timeout=20)
        for consumer in consumers:
            assert all(consumer.state.is_session_revoked(f"rot-{i}") for i in range(40))
            assert consumer.stats().dead_lettered == 0


def test_cli_consume_runs_a_service_that_applies_cli_revocations(
    kafka_bootstrap: str, topics: TopicNames, jwks_file: Path, key_file: Path
) -> None:
    env = revocast_env(kafka_bootstrap, topics, key_file)
    consumer = subprocess.Popen(
        [sys.executable, "-m", "revocast.cli", "consume", "--service", "mail",
         "--instance", "mail-1", "--jwks", str(jwks_file)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        done = run_cli(
            "revoke", "token", "--subject", "gina", "--jti", "j-consume",
            "--wait", "mail", "--timeout", "40", "--json", env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)["in_force_result"]
        assert [i["instance"] for i in result["services"]["mail"]["instances"]] == ["mail-1"]
    finally:
        consumer.send_signal(signal.SIGTERM)
        try:
            output, _ = consumer.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            consumer.kill()
            output, _ = consumer.communicate()
    assert consumer.returncode == 0, output
