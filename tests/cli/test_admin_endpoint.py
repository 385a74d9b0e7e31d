"""The read-only admin endpoint (consumers.admin) on a real loopback HTTP server: decisions
with their rule, freshness and applied-through offsets; bounded, named refusals; GET only."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from consumers.admin import serve_admin
from consumers.freshness import FreshnessGuard, FreshnessReport
from consumers.state import RevocationState
from consumers.testing import InMemoryRevocations
from schemas import TopicNames


class View:
    """What serve_admin reads, made of the real state and freshness guard."""

    service = "orders"
    instance = "orders-1"
    topics = TopicNames()

    def __init__(self, state: RevocationState, guard: FreshnessGuard) -> None:
        self.state = state
        self.guard = guard

    @property
    def ready(self) -> bool:
        return self.guard.ready

    def freshness(self, now: float | None = None) -> FreshnessReport:
        return self.guard.report(now)

    def positions(self) -> dict[int, int]:
        return {0: 5, 1: 0}


@pytest.fixture
def rev() -> InMemoryRevocations:
    return InMemoryRevocations()


@pytest.fixture
def client(rev: InMemoryRevocations) -> Iterator[httpx.Client]:
    guard = FreshnessGuard(5.0)
    guard.set_partitions([0, 1])
    guard.mark_ready()
    guard.observe(0, time.time())
    registry = CollectorRegistry()
    Counter("revocast_test_marker", "proves /metrics is this registry's", registry=registry).inc()
    server, thread = serve_admin(View(rev.state, guard), "127.0.0.1", 0, registry=registry)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}", timeout=10) as c:
            yield c
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_revoked_session_is_answered_with_its_rule(
    client: httpx.Client, rev: InMemoryRevocations
) -> None:
    rev.revoke_session("s-42", subject="alice")
    answer = client.get("/revocast/inspect", params={"sub": "alice", "sid": "s-42"}).json()
    assert answer["decision"]["verdict"] == "revoked"
    assert answer["decision"]["rule"] == "session_revoked"
    assert answer["service"] == "orders"
    assert answer["applied_through"] == {"0": 4, "1": -1}
    assert answer["freshness"]["ready"] is True
    assert "partition 1" in answer["freshness"]["reason"]  # never heard from: stale, said why
    other = client.get("/revocast/inspect", params={"sub": "alice", "sid": "s-1"}).json()
    assert other["decision"] == {"verdict": "allow", "rule": None, "detail": "", "since": None}


def test_an_offboarding_decides_by_iat(client: httpx.Client, rev: InMemoryRevocations) -> None:
    rev.offboard("bob", not_before=time.time() - 60)
    before = datetime.fromtimestamp(time.time() - 120, UTC).isoformat()
    old = client.get("/revocast/inspect", params={"sub": "bob", "iat": before}).json()
    assert old["decision"]["rule"] == "subject_offboarded"
    fresh = client.get("/revocast/inspect", params={"sub": "bob", "iat": str(time.time())}).json()
    assert fresh["decision"]["verdict"] == "allow"


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"password": "x"}, "password: unknown parameter"),
        ({"sub": "x" * 300}, "sub: must be 1 to 256 characters"),
        ({"iat": "yesterday"}, "iat: not epoch seconds nor an ISO 8601 time"),
        ({"iat": "1e300"}, "iat: must be between 2000 and 2100"),
        ({"iat": "2026-01-01T00:00:00"}, "iat: an ISO 8601 time needs a timezone"),
        ({}, "name at least one of"),
    ],
)
def test_bad_questions_are_400_naming_the_parameter(
    client: httpx.Client, query: dict[str, str], named: str
) -> None:
    response = client.get("/revocast/inspect", params=query)
    assert response.status_code == 400
    assert named in response.json()["error"]


def test_read_only_and_metrics_beside_it(client: httpx.Client) -> None:
    assert client.post("/revocast/inspect", params={"sub": "a"}).status_code == 405
    assert client.get("/revocast/nothing").status_code == 404
    fresh = client.get("/revocast/freshness").json()
    assert fresh["instance"] == "orders-1"
    assert "decision" not in fresh
    assert "revocast_test_marker_total 1.0" in client.get("/metrics").text
