"""``revocast scim``: set up SCIM clients (IdP connections) and show the SCIM settings.

    revocast scim new-client --name okta                         # a client with a fresh token
    revocast scim new-client --name entra --subject-attribute userName \\
        --kind-attribute userType --kind-map Agent=ai_agent
    revocast scim config                                         # effective settings, redacted

``new-client`` prints one JSON client (its token from :func:`secrets.token_urlsafe`, 256
bits) to append to ``REVOCAST_SCIM_CLIENTS`` or the file ``REVOCAST_SCIM_CLIENTS_FILE``
names; paste the token into the IdP as its bearer token. The SCIM endpoint itself is served
by ``revocast serve-api`` at ``/scim/v2`` once a client is configured.
"""

from __future__ import annotations

import argparse
import json
import secrets

from pydantic import ValidationError

from producer.ingress.scim.settings import ScimClient, ScimSettings, SubjectAttribute
from revocast.commands import Subparsers
from revocast.options import print_json
from schemas import ConfigError, SubjectKind

__all__ = ["register"]


def register(subparsers: Subparsers) -> None:
    scim = subparsers.add_parser("scim", help="SCIM 2.0 service provider: clients and settings")
    sub = scim.add_subparsers(dest="scim_command", required=True, metavar="SUBCOMMAND")

    new = sub.add_parser("new-client", help="print a new SCIM client (JSON) with a fresh token")
    new.add_argument("--name", required=True, help="the client's name in logs and events")
    new.add_argument(
        "--subject-attribute",
        choices=[a.value for a in SubjectAttribute],
        default=SubjectAttribute.EXTERNAL_ID.value,
        help="SCIM attribute that is the tokens' sub (default: externalId)",
    )
    new.add_argument(
        "--kind",
        choices=[k.value for k in SubjectKind],
        default=SubjectKind.HUMAN.value,
        help="kind of its subjects (default: human)",
    )
    new.add_argument("--kind-attribute", choices=["userType", "title"], help="picks the kind")
    new.add_argument(
        "--kind-map",
        action="append",
        default=[],
        metavar="VALUE=KIND",
        help="kind-attribute value -> kind (repeatable), e.g. Agent=ai_agent",
    )
    new.add_argument("--tenant", help="tenant set on every subject of this client")
    new.set_defaults(handler=run_new_client)

    config = sub.add_parser("config", help="effective SCIM settings, tokens redacted")
    config.add_argument("--json", action="store_true", help="print JSON")
    config.set_defaults(handler=run_config)


def run_new_client(args: argparse.Namespace) -> int:
    kind_map: dict[str, str] = {}
    for pair in args.kind_map:
        value, sep, kind = pair.partition("=")
        if not sep or not value:
            raise ConfigError(f"--kind-map {pair!r}: expected VALUE=KIND, e.g. Agent=ai_agent")
        kind_map[value] = kind
    try:
        client = ScimClient.model_validate(
            {
                "name": args.name,
                "token": secrets.token_urlsafe(32),
                "subject_attribute": args.subject_attribute,
                "subject_kind": args.kind,
                "kind_attribute": args.kind_attribute,
                "kind_map": kind_map,
                "tenant": args.tenant,
            }
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"])
        raise ConfigError(f"new SCIM client: {where}: {err['msg']}") from None
    out = client.model_dump(mode="json", exclude_defaults=True)
    out["token"] = client.token.get_secret_value()
    print(json.dumps(out))
    return 0


def run_config(args: argparse.Namespace) -> int:
    settings = ScimSettings.load()
    values = settings.redacted()
    values["clients"] = [c.redacted() for c in settings.all_clients()]  # the file's too
    if args.json:
        print_json(values)
        return 0
    for name, env, description in ScimSettings.describe():
        print(f"{name} = {json.dumps(values[name], default=str)}")
        print(f"    ${env}: {description}")
    return 0
