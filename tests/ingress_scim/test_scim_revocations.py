"""SCIM in, revocations out, against the real broker, Redis and consumers.

A SCIM client this project did not write (scim2-client over httpx2) talks to the real
endpoint (uvicorn on 127.0.0.1); three services run real RevocationConsumers on the topic
and verify IdP-signed tokens. Payloads are the ones Okta and Entra ID send.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from conftest import (
    ENTRA_TOKEN,
    OKTA_TOKEN,
    Fleet,
    mint,
    patch_body,
    scim_client,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import Group, GroupMember, ListResponse, SearchRequest, User

from consumers import RevokedTokenError, StaleClaimsError
from producer.ingress.scim.server import ScimEndpoint
from schemas import ClaimsChanged, Envelope, SubjectOffboarded, TopicNames

pytestmark = pytest.mark.integration


def uid() -> str:
    return uuid.uuid4().hex[:8]


def create_user(scim: SyncSCIMClient, **fields: Any) -> Any:
    name = fields.pop("user_name", f"user-{uid()}@example.com")
    external = fields.pop("external_id", f"00u{uid()}")
    return scim.create(User(user_name=name, external_id=external, active=True, **fields))


def assert_rejected_everywhere(fleet: Fleet, token: str, error: type[Exception]) -> None:
    for service, verifier in fleet.verifiers.items():
        with pytest.raises(error):
            verifier.verify(token)
        assert service  # every service was asked


def assert_accepted_everywhere(fleet: Fleet, token: str) -> None:
    for verifier in fleet.verifiers.values():
        verifier.verify(token)


def test_okta_deactivation_rejects_the_users_tokens_in_every_service(
    okta: SyncSCIMClient,
    fleet: Fleet,
    idp_key: Ed25519PrivateKey,
    kafka_bootstrap: str,
    topics: TopicNames,
    published: Callable[[], list[Envelope]],
) -> None:
    user = create_user(okta)
    subject = user.external_id
    token = mint(idp_key, subject, iat=time.time() - 5)
    assert_accepted_everywhere(fleet, token)
    before = len(published())

    # Okta (SCIM 2.0 apps): PATCH with a no-path replace of {"active": false}.
    okta.modify(
        User,
        user.id,
        patch_body({"op": "replace", "value": {"active": False}}),
        check_request_payload=False,
    )
    applied = fleet.wait_everywhere(subject, "subject.offboarded")
    assert len(applied) == 3
    assert_rejected_everywhere(fleet, token, RevokedTokenError)
    event = applied[0].envelope.event
    assert isinstance(event, SubjectOffboarded)
    assert event.subject.kind == "human"
    assert event.source is not None
    assert (event.source.channel, event.source.origin, event.source.ref) == (
        "scim",
        "okta",
        user.id,
    )
    assert event.source.received_at is not None
    assert len(published()) == before + 1

    stored = okta.query(User, user.id)
    assert stored.active is False

    # Deactivating again publishes nothing; reactivating publishes nothing and lets
    # tokens issued after it through, while the old one stays rejected.
    okta.modify(
        User,
        user.id,
        patch_body({"op": "replace", "value": {"active": False}}),
        check_request_payload=False,
    )
    okta.modify(
        User,
        user.id,
        patch_body({"op": "replace", "value": {"active": True}}),
        check_request_payload=False,
    )
    assert len(published()) == before + 1
    # A token issued after the not-before (iat is whole seconds, and never in the future).
    time.sleep(max(0.0, event.not_before.timestamp() + 1.05 - time.time()))
    fresh = mint(idp_key, subject)
    assert_accepted_everywhere(fleet, fresh)
    assert_rejected_everywhere(fleet, token, RevokedTokenError)


@pytest.mark.parametrize(
    "form",
    ["entra-path-string", "entra-no-path-string", "okta-put", "scim-path-bool", "delete"],
)
def test_every_deactivation_form_publishes_one_subject_offboarded(
    endpoint: ScimEndpoint,
    fleet: Fleet,
    idp_key: Ed25519PrivateKey,
    kafka_bootstrap: str,
    topics: TopicNames,
    published: Callable[[], list[Envelope]],
    form: str,
) -> None:
    entra = form.startswith("entra")
    scim = scim_client(endpoint, ENTRA_TOKEN if entra else OKTA_TOKEN)
    name = f"agent-{uid()}@contoso.example"
    user = create_user(scim, user_name=name, user_type="Agent")
    subject = name if entra else user.external_id
    token = mint(idp_key, subject, iat=time.time() - 5)
    before = len(published())

    if form == "entra-path-string":
        scim.modify(
            User,
            user.id,
            patch_body({"op": "Replace", "path": "active", "value": "False"}),
            check_request_payload=False,
        )
    elif form == "entra-no-path-string":
        scim.modify(
            User,
            user.id,
            patch_body({"op": "Replace", "value": {"active": "False"}}),
            check_request_payload=False,
        )
    elif form == "okta-put":
        # Okta (SCIM 1.1-era and AIW apps): PUT of the whole user with active false.
        scim.replace(
            User(
                id=user.id,
                user_name=name,
                external_id=user.external_id,
                active=False,
                user_type="Agent",
            )
        )
    elif form == "scim-path-bool":
        scim.modify(
            User,
            user.id,
            patch_body({"op": "replace", "path": "active", "value": False}),
            check_request_payload=False,
        )
    else:
        scim.delete(User, user.id)

    applied = fleet.wait_everywhere(subject, "subject.offboarded")
    event = applied[0].envelope.event
    assert isinstance(event, SubjectOffboarded)
    # Entra's client names subjects by userName, maps userType Agent to ai_agent, sets a tenant.
    assert event.subject.kind == ("ai_agent" if entra else "human")
    assert event.subject.tenant == ("contoso" if entra else None)
    assert_rejected_everywhere(fleet, token, RevokedTokenError)
    assert len(published()) == before + 1
    scim.client.close()


def test_group_membership_removal_publishes_claims_changed_for_each_member_who_left(
    okta: SyncSCIMClient,
    entra: SyncSCIMClient,
    fleet: Fleet,
    idp_key: Ed25519PrivateKey,
    kafka_bootstrap: str,
    topics: TopicNames,
    published: Callable[[], list[Envelope]],
) -> None:
    users = [create_user(okta) for _ in range(5)]
    subjects = [u.external_id for u in users]
    tokens = {s: mint(idp_key, s, iat=time.time() - 5) for s in subjects}
    group = okta.create(
        Group(display_name=f"eng-{uid()}", members=[GroupMember(value=u.id) for u in users[:3]])
    )
    nested = okta.create(
        Group(display_name=f"sre-{uid()}", members=[GroupMember(value=users[4].id)])
    )
    assert okta.query(User, users[0].id).groups[0].value == group.id
    before = len(published())

    # Additions publish nothing: Okta's add, and a nested group.
    okta.modify(
        Group,
        group.id,
        patch_body(
            {
                "op": "add",
                "path": "members",
                "value": [{"value": users[3].id}, {"value": nested.id}],
            }
        ),
        check_request_payload=False,
    )
    assert len(published()) == before

    # Okta removes one member with a filtered path.
    okta.modify(
        Group,
        group.id,
        patch_body({"op": "remove", "path": f'members[value eq "{users[0].id}"]'}),
        check_request_payload=False,
    )
    applied = fleet.wait_everywhere(subjects[0], "claims.changed")
    event = applied[0].envelope.event
    assert isinstance(event, ClaimsChanged)
    assert event.claims == ("groups",)
    assert event.source is not None
    assert event.source.ref == group.id
    for verifier in fleet.verifiers.values():
        with pytest.raises(StaleClaimsError):
            verifier.verify(tokens[subjects[0]])
    assert len(published()) == before + 1

    # Entra's form: the member to remove in the value.
    entra_remove = patch_body(
        {"op": "Remove", "path": "members", "value": [{"value": users[1].id}]}
    )
    # Another SCIM client does not see this client's groups at all.
    error = entra.modify(
        Group, group.id, entra_remove, check_request_payload=False, raise_scim_errors=False
    )
    assert error.status == 404
    okta.modify(Group, group.id, entra_remove, check_request_payload=False)
    fleet.wait_everywhere(subjects[1], "claims.changed")

    # A PUT with fewer members: the nested group leaves, so its user's claims changed.
    current = okta.query(Group, group.id)
    okta.replace(
        Group(
            id=group.id,
            display_name=current.display_name,
            members=[GroupMember(value=users[2].id), GroupMember(value=users[3].id)],
        )
    )
    fleet.wait_everywhere(subjects[4], "claims.changed")
    assert len(published()) == before + 3

    # Deleting the group: everyone still in it.
    okta.delete(Group, group.id)
    for subject in (subjects[2], subjects[3]):
        fleet.wait_everywhere(subject, "claims.changed")
    assert len(published()) == before + 5
    assert okta.query(User, users[2].id).groups is None
    # A user who never left a group keeps a valid token.
    assert_accepted_everywhere(fleet, mint(idp_key, f"never-in-a-group-{uid()}"))


def test_filters_and_pagination_idps_use(okta: SyncSCIMClient, entra: SyncSCIMClient) -> None:
    tag = uid()
    users = [create_user(okta, user_name=f"{tag}-{i}@example.com") for i in range(12)]
    group = okta.create(Group(display_name=f"Team {tag}", members=[GroupMember(value=users[0].id)]))

    def search(scim: SyncSCIMClient, model: Any, **params: Any) -> ListResponse[Any]:
        return scim.query(model, query_parameters=SearchRequest(**params))

    # userName eq is case-insensitive (caseExact false), externalId eq is case-exact.
    found = search(okta, User, filter=f'userName eq "{tag.upper()}-3@EXAMPLE.COM"')
    assert [u.id for u in found.resources] == [users[3].id]
    found = search(okta, User, filter=f'externalId eq "{users[5].external_id}"')
    assert [u.id for u in found.resources] == [users[5].id]
    # Each SCIM client searches its own users only.
    assert search(entra, User, filter=f'externalId eq "{users[5].external_id}"').total_results == 0
    assert (
        search(okta, User, filter=f'externalId eq "{users[5].external_id.upper()}"').total_results
        == 0
    )
    found = search(okta, User, filter=f'userName eq "{tag}-7@example.com" and active eq true')
    assert [u.id for u in found.resources] == [users[7].id]
    found = search(okta, Group, filter=f'displayName eq "team {tag}"')
    assert [g.id for g in found.resources] == [group.id]
    found = search(okta, Group, filter=f'members[value eq "{users[0].id}"]')
    assert [g.id for g in found.resources] == [group.id]
    assert search(okta, User, filter='userName eq "nobody@example.com"').total_results == 0

    # Pagination: startIndex/count, default page size 5, at most 10 per page.
    everything = search(okta, User, filter=f'userName sw "{tag}-"', start_index=1, count=100)
    assert everything.total_results == 12
    assert everything.items_per_page == 10
    page = search(okta, User, filter=f'userName sw "{tag}-"', start_index=11, count=5)
    assert (page.start_index, page.items_per_page) == (11, 2)
    assert len(search(okta, User, filter=f'userName sw "{tag}-"').resources) == 5
    seen = {u.id for u in everything.resources} | {u.id for u in page.resources}
    assert seen == {u.id for u in users}


def test_request_to_applied_everywhere_latency(
    okta: SyncSCIMClient,
    fleet: Fleet,
    record_property: Any,
    request: pytest.FixtureRequest,
) -> None:
    """From the SCIM request leaving the client to the last of the three services having
    applied the revocation (the consumers' own apply time). Measured, not asserted."""
    users = [create_user(okta) for _ in range(30)]
    request_to_ack: list[float] = []
    request_to_applied: list[float] = []
    for user in users:
        sent_ns = time.time_ns()
        okta.modify(
            User,
            user.id,
            patch_body({"op": "replace", "value": {"active": False}}),
            check_request_payload=False,
        )
        acked_ns = time.time_ns()
        applied = fleet.wait_everywhere(user.external_id, "subject.offboarded")
        request_to_ack.append((acked_ns - sent_ns) / 1e6)
        request_to_applied.append((max(a.applied_ns for a in applied) - sent_ns) / 1e6)

    def p(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1]

    summary = (
        f"SCIM PATCH active=false -> 2xx: p50 {p(request_to_ack, 50):.1f} ms, "
        f"p99 {p(request_to_ack, 99):.1f} ms; -> applied in all 3 services: "
        f"p50 {p(request_to_applied, 50):.1f} ms, p99 {p(request_to_applied, 99):.1f} ms "
        f"(n={len(users)})"
    )
    record_property("scim_latency", summary)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n[revocast] {summary}", flush=True)
    assert len(request_to_applied) == len(users)


def test_deleting_a_user_removes_it_from_its_groups_in_the_same_write(
    okta: SyncSCIMClient, published: Callable[[], list[Envelope]]
) -> None:
    ada, bob = create_user(okta), create_user(okta)
    group = okta.create(
        Group(
            display_name=f"ops-{uid()}",
            members=[GroupMember(value=ada.id), GroupMember(value=bob.id)],
        )
    )
    before = {e.event_id for e in published()}
    okta.delete(User, ada.id)
    after = okta.query(Group, group.id)
    assert [m.value for m in after.members] == [bob.id]
    assert after.meta.version != group.meta.version
    # One SubjectOffboarded for Ada; leaving the group on deletion adds no ClaimsChanged.
    [event] = [e.event for e in published() if e.event_id not in before]
    assert isinstance(event, SubjectOffboarded)
    assert event.subject.id == ada.external_id
    error = okta.query(User, ada.id, raise_scim_errors=False)
    assert error.status == 404
