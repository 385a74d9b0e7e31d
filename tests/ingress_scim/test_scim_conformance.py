"""RFC 7643/7644 conformance, as checked by scim2-tester (a suite this project did not
write): discovery endpoints, creation, query, search with attributes, replacement, PATCH
add/remove/replace of every attribute, deletion, for Users and Groups, against the real
endpoint, broker and Redis."""

from __future__ import annotations

from collections import Counter

import httpx2
import pytest
from conftest import TESTER_TOKEN
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from producer.ingress.scim.server import ScimEndpoint

pytestmark = pytest.mark.integration


def test_scim2_tester_finds_nothing_wrong(endpoint: ScimEndpoint) -> None:
    with httpx2.Client(
        base_url=endpoint.scim_url,
        headers={"Authorization": f"Bearer {TESTER_TOKEN}"},
        timeout=30,
    ) as http:
        results = check_server(SyncSCIMClient(http))
    statuses = Counter(result.status for result in results)
    failures = [
        f"{result.title}: {result.reason}" for result in results if result.status != Status.SUCCESS
    ]
    assert not failures, failures
    assert statuses[Status.SUCCESS] >= 100  # the suite ran, for both resource types
