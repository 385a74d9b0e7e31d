"""Bad input gets SCIM's own error answer, is logged with its reason (no token), and
publishes nothing. Against the real endpoint, broker and Redis."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from conftest import (
    ENTRA_TOKEN,
    ERROR_SCHEMA,
    OKTA_TOKEN,
    USER_SCHEMA,
    patch_body,
    user_body,
)
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import Error, Group, User

from producer.ingress.scim.server import ScimEndpoint
from schemas import Envelope, TopicNames

pytestmark = pytest.mark.integration

SCIM_JSON = {"Content-Type": "application/scim+json"}


@pytest.fixture
def http(endpoint: ScimEndpoint) -> Iterator[httpx2.Client]:
    with httpx2.Client(
        base_url=endpoint.scim_url,
        headers={"Authorization": f"Bearer {OKTA_TOKEN}"},
        timeout=30,
    ) as client:
        yield client


def scim_error(response: Any, status: int, scim_type: str | None = None) -> str:
    """Assert ``response`` is RFC 7644's error body for ``status``; return its detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    body = response.json()
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type
    assert body["detail"]
    return str(body["detail"])


def new_user(http: httpx2.Client, **extra: Any) -> dict[str, Any]:
    body = user_body(f"u-{uuid.uuid4().hex[:8]}@example.com", f"00u{uuid.uuid4().hex[:8]}")
    body.update(extra)
    response = http.post("/Users", content=json.dumps(body), headers=SCIM_JSON)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_protocol_errors_answer_scim_errors_and_publish_nothing(
    http: httpx2.Client,
    okta: SyncSCIMClient,
    kafka_bootstrap: str,
    topics: TopicNames,
    published: Callable[[], list[Envelope]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="producer.ingress.scim")
    user = new_user(http)
    deactivate = json.dumps(patch_body({"op": "replace", "value": {"active": False}}))
    path = f"/Users/{user['id']}"
    before = len(published())

    # Missing or unknown token: 401 with a Bearer challenge, before anything else.
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Bearer not-a-client-token"},
        {"Authorization": f"Basic {OKTA_TOKEN}"},
    ):
        response = http.patch(path, content=deactivate, headers={**SCIM_JSON, **headers})
        scim_error(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")

    # Malformed JSON, and JSON that is not a PatchOp.
    assert "JSON" in scim_error(
        http.patch(path, content=b'{"Operations": [', headers=SCIM_JSON), 400, "invalidSyntax"
    )
    scim_error(http.patch(path, content=b"[1, 2]", headers=SCIM_JSON), 400, "invalidSyntax")

    # Wrong content type.
    scim_error(http.patch(path, content=deactivate, headers={"Content-Type": "text/plain"}), 415)

    # Oversized: declared, and streamed without a length (chunked); limit 64 KiB here.
    big = json.dumps(user_body("big@example.com", "00ubig", displayName="x" * 70_000))
    assert "65536" in scim_error(http.post("/Users", content=big, headers=SCIM_JSON), 413)

    def chunks() -> Iterator[bytes]:
        yield b'{"schemas": ["' + USER_SCHEMA.encode() + b'"], "displayName": "'
        for _ in range(100):
            yield b"y" * 1024
        yield b'"}'

    streamed = scim_error(http.post("/Users", content=chunks(), headers=SCIM_JSON), 413)
    assert "larger than 65536" in streamed  # refused while arriving, not after

    # PATCH paths that do not exist, and values of the wrong type.
    for operation in (
        {"op": "replace", "path": "activ", "value": False},
        {"op": "replace", "path": 'emails[type eq "work"].nosuch', "value": "x"},
        {"op": "remove", "path": "urn:example:unknown:2.0:User:active"},
    ):
        scim_error(
            http.patch(path, content=json.dumps(patch_body(operation)), headers=SCIM_JSON),
            400,
            "invalidPath",
        )
    scim_error(
        http.patch(
            path,
            content=json.dumps(patch_body({"op": "replace", "path": "active", "value": "maybe"})),
            headers=SCIM_JSON,
        ),
        400,
        "invalidValue",
    )
    scim_error(
        http.patch(path, content=json.dumps(patch_body({"op": "frobnicate"})), headers=SCIM_JSON),
        400,
        "invalidValue",
    )

    # Filters: bad syntax, unknown attribute (through scim2-client, raw filter strings).
    for bad in ("userName eq", 'nosuch eq "x"', 'userName eq "a" and', "((("):
        response = http.get("/Users", params={"filter": bad})
        scim_error(response, 400, "invalidFilter")

    # Version mismatch: If-Match with a stale ETag.
    stale = http.patch(path, content=deactivate, headers={**SCIM_JSON, "If-Match": 'W/"0"'})
    scim_error(stale, 412)

    # A subject id the contract refuses: control characters, missing attribute.
    for external_id in ("line\nbreak", "tab\there", "x" * 300):
        body = user_body(f"c-{uuid.uuid4().hex[:6]}@example.com", external_id)
        response = http.post("/Users", content=json.dumps(body), headers=SCIM_JSON)
        assert "externalId" in scim_error(response, 400, "invalidValue")
    body = user_body("no-external@example.com", None)
    assert "externalId" in scim_error(
        http.post("/Users", content=json.dumps(body), headers=SCIM_JSON), 400, "invalidValue"
    )
    removal = patch_body({"op": "remove", "path": "externalId"})
    scim_error(
        http.patch(path, content=json.dumps(removal), headers=SCIM_JSON), 400, "invalidValue"
    )

    # Unknown resources and members; bulk is not offered.
    scim_error(http.patch("/Users/does-not-exist", content=deactivate, headers=SCIM_JSON), 404)
    members = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "g",
        "members": [{"value": "no-such-user"}],
    }
    scim_error(
        http.post("/Groups", content=json.dumps(members), headers=SCIM_JSON), 400, "invalidValue"
    )
    scim_error(http.post("/Bulk", content=b"{}", headers=SCIM_JSON), 501)

    # Nothing above published anything, and the user is still active.
    assert len(published()) == before
    assert okta.query(User, user["id"]).active is True

    # Every refusal was logged with its reason; no token ever was.
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) >= 20
    assert any("401" in m and "bearer token" in m for m in refusals)
    assert any("invalidPath" in m and "activ" in m for m in refusals)
    assert any("412" in m for m in refusals)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert OKTA_TOKEN not in logged
    assert ENTRA_TOKEN not in logged
    assert "\n" not in "".join(refusals)  # ids with line breaks are escaped


def test_scim2_client_sees_well_formed_errors(okta: SyncSCIMClient) -> None:
    """The same errors, as a SCIM client that parses them reads them."""
    user = okta.create(User(user_name="err@example.com", external_id="00uerr", active=True))
    error = okta.modify(
        User,
        user.id,
        patch_body({"op": "replace", "path": "nosuch", "value": 1}),
        check_request_payload=False,
        raise_scim_errors=False,
    )
    assert isinstance(error, Error)
    assert (error.status, error.scim_type) == (400, "invalidPath")
    # A successful PATCH answers 200 with the resource (what Okta expects).
    patched = okta.modify(
        User,
        user.id,
        patch_body({"op": "replace", "path": "displayName", "value": "Err"}),
        check_request_payload=False,
    )
    assert patched.display_name == "Err"
    error = okta.query(
        User,
        query_parameters={"filter": 'userName eq "a" or'},
        check_request_payload=False,
        raise_scim_errors=False,
    )
    assert isinstance(error, Error)
    assert error.scim_type == "invalidFilter"
    # Uniqueness: userName is unique per SCIM client.
    error = okta.create(
        User(user_name="ERR@example.com", external_id="00uerr2"), raise_scim_errors=False
    )
    assert isinstance(error, Error)
    assert (error.status, error.scim_type) == (409, "uniqueness")
    # A group cannot contain itself.
    group = okta.create(Group(display_name="loop"))
    error = okta.modify(
        Group,
        group.id,
        patch_body({"op": "add", "path": "members", "value": [{"value": group.id}]}),
        check_request_payload=False,
        raise_scim_errors=False,
    )
    assert isinstance(error, Error)
    assert error.scim_type == "invalidValue"
    assert okta.query(Group, group.id).members is None
