"""Unit tests of the SCIM ingress (no broker, no Redis): settings, subjects, what each
change publishes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from scim2_models import Email, Group, InvalidValueException, User

from producer.ingress.scim import (
    Provenance,
    ScimClient,
    ScimSettings,
    claims_changed,
    events_for_user_change,
    require_subject,
    subject_of,
)
from schemas import ConfigError, SubjectOffboarded

TOKEN = "a-scim-client-token-of-32-chars-or-more"


def client(**fields: object) -> ScimClient:
    return ScimClient.model_validate({"name": "idp", "token": TOKEN, **fields})


def provenance(**fields: object) -> Provenance:
    return Provenance(
        client=client(**fields), received_at=datetime.now(UTC), lifetime=timedelta(hours=2)
    )


def test_clients_from_json_and_file_redacted(tmp_path: Path) -> None:
    more = tmp_path / "clients.json"
    more.write_text(
        json.dumps([{"name": "entra", "token": "e" * 40, "subject_attribute": "userName"}])
    )
    settings = ScimSettings.load(
        clients=json.dumps([{"name": "okta", "token": TOKEN}]), clients_file=str(more)
    )
    clients = settings.all_clients()
    assert [(c.name, c.subject_attribute) for c in clients] == [
        ("okta", "externalId"),
        ("entra", "userName"),
    ]
    shown = json.dumps(settings.redacted())
    assert TOKEN not in shown
    assert "e" * 40 not in shown
    assert '"***"' in shown
    assert TOKEN not in repr(settings)


@pytest.mark.parametrize(
    ("clients", "message"),
    [
        ('[{"name": "x", "token": "short"}]', "at least 32 characters"),
        ('[{"name": "x y", "token": "' + "t" * 40 + '"}]', "REVOCAST_SCIM_CLIENTS"),
        (
            '[{"name": "x", "token": "' + "t" * 40 + '", "subject_attribute": "mail"}]',
            "subject_attribute",
        ),
        (
            '[{"name": "x", "token": "' + "t" * 40 + '", "kind_map": {"a": "human"}}]',
            "kind_attribute",
        ),
        ("not json", r"REVOCAST_SCIM_CLIENTS \(clients\): Expecting value"),
    ],
)
def test_bad_client_settings_name_what_is_wrong(clients: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ScimSettings.load(clients=clients)


def test_duplicate_clients_and_bad_files_are_config_errors(tmp_path: Path) -> None:
    twice = ScimSettings.load(
        clients=[{"name": "a", "token": TOKEN}, {"name": "b", "token": TOKEN}]
    )
    with pytest.raises(ConfigError, match="shares its token"):
        twice.all_clients()
    bad = tmp_path / "bad.json"
    bad.write_text('[{"name": "a"}]')
    with pytest.raises(ConfigError, match=r"REVOCAST_SCIM_CLIENTS_FILE .*token"):
        ScimSettings.load(clients_file=str(bad)).all_clients()
    with pytest.raises(ConfigError, match="REVOCAST_SCIM_CLIENTS_FILE"):
        ScimSettings.load(clients_file=str(tmp_path / "missing.json")).all_clients()
    with pytest.raises(ConfigError, match="default_page_size"):
        ScimSettings.load(default_page_size=500, max_page_size=100)


def ada(**fields: object) -> User:
    base: dict[str, object] = {
        "id": "scim-id-1",
        "user_name": "ada@example.com",
        "external_id": "00u-ada",
        "active": True,
        "emails": [Email(value="home@example.com"), Email(value="ada@work.example", primary=True)],
    }
    base.update(fields)
    return User.model_validate(base)


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("externalId", "00u-ada"),
        ("userName", "ada@example.com"),
        ("id", "scim-id-1"),
        ("emails", "ada@work.example"),
    ],
)
def test_the_subject_attribute_is_per_client(attribute: str, expected: str) -> None:
    subject = subject_of(ada(), client(subject_attribute=attribute))
    assert subject is not None
    assert subject.id == expected


def test_subject_kind_from_an_attribute_and_missing_subjects() -> None:
    agents = client(
        kind_attribute="userType",
        kind_map={"Agent": "ai_agent"},
        subject_kind="service_account",
        tenant="t1",
    )
    agent = subject_of(ada(user_type="Agent"), agents)
    other = subject_of(ada(user_type="Employee"), agents)
    assert agent is not None
    assert (agent.kind, agent.tenant) == ("ai_agent", "t1")
    assert other is not None
    assert other.kind == "service_account"
    # No primary email among several: no subject, and a user without one is refused.
    emails = client(subject_attribute="emails")
    several = ada(emails=[Email(value="a@x.example"), Email(value="b@x.example")])
    assert subject_of(several, emails) is None
    with pytest.raises(InvalidValueException, match=r"primary emails\.value"):
        require_subject(several, emails)
    with pytest.raises(InvalidValueException, match="256"):
        require_subject(ada(external_id="e" * 257), client())


def test_what_each_user_change_publishes() -> None:
    who = provenance()
    active, inactive = ada(), ada(active=False)
    assert events_for_user_change(None, active, who) == []  # creation
    assert events_for_user_change(None, inactive, who) == []
    assert events_for_user_change(inactive, active, who) == []  # reactivation
    assert events_for_user_change(inactive, inactive, who) == []  # already inactive
    assert events_for_user_change(active, ada(display_name="Ada"), who) == []  # profile
    [deactivated] = events_for_user_change(active, inactive, who)
    [deleted] = events_for_user_change(active, None, who)
    [unset_then_off] = events_for_user_change(ada(active=None), inactive, who)
    for event in (deactivated, deleted, unset_then_off):
        assert isinstance(event, SubjectOffboarded)
        assert event.subject.id == "00u-ada"
        assert event.expires_at - event.not_before == timedelta(hours=2)
        assert event.source is not None
        assert event.source.ref == "scim-id-1"
    # The same write renaming the subject offboards both names.
    renamed = events_for_user_change(active, ada(active=False, external_id="00u-new"), who)
    assert sorted(e.subject.id for e in renamed) == ["00u-ada", "00u-new"]


def test_claims_changed_once_per_subject() -> None:
    who = provenance()
    users = [ada(), ada(id="scim-id-2"), ada(id="scim-id-3", external_id="00u-bob")]
    events = claims_changed(users, "g-1", Group(display_name="eng").display_name, who)
    assert [(e.subject.id, e.claims) for e in events] == [
        ("00u-ada", ("groups",)),
        ("00u-bob", ("groups",)),
    ]
    assert events[0].reason == "SCIM: removed from group 'eng' by idp"


def test_cli_new_client_prints_a_usable_client_and_config_redacts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from revocast.cli import main

    code = main(
        [
            "scim",
            "new-client",
            "--name",
            "entra",
            "--subject-attribute",
            "userName",
            "--kind-attribute",
            "userType",
            "--kind-map",
            "Agent=ai_agent",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    made = ScimClient.model_validate(printed)
    assert (made.name, made.subject_attribute, made.kind_map) == (
        "entra",
        "userName",
        {"Agent": "ai_agent"},
    )
    assert len(printed["token"]) >= 43  # 32 random bytes, URL-safe base64

    monkeypatch.setenv("REVOCAST_SCIM_CLIENTS", json.dumps([printed]))
    monkeypatch.setenv("REVOCAST_SCIM_REDIS_URL", "redis://:hunter2-password@cache:6379/0")
    assert main(["scim", "config", "--json"]) == 0
    shown = capsys.readouterr().out
    assert printed["token"] not in shown
    assert "hunter2-password" not in shown
    assert json.loads(shown)["clients"][0]["token"] == "***"

    assert main(["scim", "new-client", "--name", "x", "--kind-map", "nokind"]) == 1
    assert "VALUE=KIND" in capsys.readouterr().err
