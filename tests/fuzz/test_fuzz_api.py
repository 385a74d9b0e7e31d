"""The HTTP API under random bodies, over real HTTP to a real broker: never a 500.

Every answer is one of the documented statuses with a JSON body; a body that is a
valid request is published (202) to an isolated topic on the real broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from producer.api import create_app
from producer.settings import ApiToken, ProducerSettings
from schemas import SigningKey, TopicNames
from tests.conftest import create_topics
from tests.producer.producer_testkit import ApiServer, prefix_of

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
TOKEN = "fuzz-token-" * 3
AUTH = {"authorization": f"Bearer {TOKEN}"}
KINDS = ["session", "token", "subject", "claims", "credential"]
DOCUMENTED = {202, 400, 404, 413, 422, 503}


@pytest.fixture(scope="module")
def http(kafka_bootstrap: str) -> Iterator[httpx.Client]:
    topics = TopicNames.prefixed(f"fuzz-{uuid.uuid4().hex[:10]}")
    create_topics(kafka_bootstrap, topics)
    api_settings = ProducerSettings(
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=prefix_of(topics),
        api_tokens=[
            ApiToken(
                name="fuzz", token=SecretStr(TOKEN), scopes=frozenset({"revoke:*", "status:read"})
            )
        ],
        delivery_timeout=10,
    )
    app = create_app(api_settings, signer=SigningKey.generate("fuzz"))
    with ApiServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**25), max_value=10**25)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)
_soon = datetime.now(UTC) + timedelta(minutes=30)
_times = (
    st.sampled_from(
        [
            _soon.isoformat(),
            "2100-01-01T00:00:00Z",
            "9999-12-31T23:59:59+00:00",
            "1970-01-01T00:00:00Z",
            "2026-01-01T00:00:00",  # naive
            "not a time",
        ]
    )
    | _json
)
_subject = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["alice", "bob", "", "x" * 300, "a\nb", "é\u200b"]) | _json,
        "kind": st.sampled_from(["human", "service_account", "ai_agent", "robot"]),
    },
    optional={"tenant": st.sampled_from(["acme", "ac:me", ""]) | _json},
)
_request = st.fixed_dictionaries(
    {"subject": _subject | _json},
    optional={
        "session_id": st.sampled_from(["s-1", "", "s\x00"]) | _json,
        "jti": st.sampled_from(["j-1", "j" * 257]) | _json,
        "credential_id": st.sampled_from(["app-1"]) | _json,
        "credential_kind": st.sampled_from(["kid", "client_id", "x"]) | _json,
        "not_before": _times,
        "changed_at": _times,
        "claims": st.lists(st.text(max_size=10), max_size=3) | _json,
        "expires_at": _times,
        "expires_in": st.floats(allow_nan=False, allow_infinity=False)
        | st.integers(min_value=-(10**30), max_value=10**30)
        | _json,
        "reason": st.text(max_size=600) | _json,
        "unknown": _json,
    },
)


def _check(response: httpx.Response) -> None:
    assert response.status_code in DOCUMENTED, (response.status_code, response.text[:300])
    body = response.json()
    if response.status_code == 202:
        assert body["event_id"]
    else:
        assert body["error"], body
    if response.status_code == 503:
        assert body["published"] is False


@FUZZ
@given(st.sampled_from([*KINDS, "nope"]), _request)
def test_request_shaped_bodies(http: httpx.Client, kind: str, body: dict[str, Any]) -> None:
    _check(http.post(f"/v1/revocations/{kind}", json=body, headers=AUTH))


@FUZZ
@given(st.sampled_from(KINDS), _json)
def test_random_json(http: httpx.Client, kind: str, body: Any) -> None:
    _check(http.post(f"/v1/revocations/{kind}", json=body, headers=AUTH))


@FUZZ
@given(st.sampled_from(KINDS), st.binary(max_size=300))
def test_random_bytes(http: httpx.Client, kind: str, body: bytes) -> None:
    _check(http.post(f"/v1/revocations/{kind}", content=body, headers=AUTH))


def test_a_valid_request_is_published(http: httpx.Client) -> None:
    body = {"subject": {"id": "alice", "kind": "human", "tenant": "acme"}, "session_id": "s-9"}
    response = http.post("/v1/revocations/session", json=body, headers=AUTH)
    assert response.status_code == 202, response.text


def _waits_not(text: str) -> bool:
    """Whether ``text`` would make the status request wait (kept out: the fuzz stays fast)."""
    try:
        return not float(text) > 0
    except ValueError:
        return True


@FUZZ
@example(event_id="0/", services=None, wait=None)  # an encoded trailing slash: a 307
@given(
    st.text(max_size=40) | st.uuids().map(str),
    st.none() | st.text(max_size=300),
    st.none() | st.text(max_size=12).filter(_waits_not),
)
def test_status_queries(
    http: httpx.Client, event_id: str, services: str | None, wait: str | None
) -> None:
    params = {k: v for k, v in (("services", services), ("wait", wait)) if v is not None}
    path = f"/v1/revocations/{quote(event_id, safe='')}"
    response = http.get(path, params=params, headers=AUTH)
    if event_id.endswith("/"):
        # An encoded trailing slash ("0%2F") is a path the router redirects to its
        # slash-less form: an answer, not a failure.
        assert response.status_code in {200, 307, 404, 405, 422, 503}, response.text[:300]
        return
    assert response.status_code in {200, 404, 405, 422, 503}, response.text[:300]
    if response.status_code != 404:  # a path the router does not know is Starlette's 404
        assert response.json()
