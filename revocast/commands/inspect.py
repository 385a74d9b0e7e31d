"""``revocast inspect``: ask a running service what it decides for a subject, session, token.

It reads the service's read-only admin endpoint (``/revocast/inspect`` on its metrics port,
see :mod:`consumers.admin`) and prints the decision, the rule that made it, and the view's
freshness and applied-through offsets in a few lines (``--json``: the endpoint's answer).

    revocast inspect --url http://127.0.0.1:9464 --subject alice --session-id s-42

Exit codes: 0 when the service answered (whatever it decided), 1 when it could not be asked
or refused the question (the message says why). ``--expect revoked`` (or ``allow``,
``stale_claims``) exits 1 unless the decision is that one, for scripts and checks.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import httpx

from revocast.argtypes import seconds_arg, time_arg
from revocast.commands import Subparsers
from revocast.options import print_json
from schemas import ConfigError, InfrastructureError

__all__ = ["register"]

_PARAMS = {
    "subject": "sub",
    "session_id": "sid",
    "jti": "jti",
    "client_id": "client_id",
    "azp": "azp",
    "tenant": "tid",
    "kid": "kid",
}


def register(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "inspect", help="ask a running service what it decides for a subject/session/token"
    )
    p.add_argument(
        "--url",
        required=True,
        metavar="URL",
        help="the service's metrics address, e.g. http://127.0.0.1:9464 "
        "(revocast consume --metrics-port)",
    )
    p.add_argument("--subject", metavar="ID", help="the token's sub")
    p.add_argument("--session-id", metavar="SID", help="the token's sid")
    p.add_argument("--jti", help="the token's id")
    p.add_argument(
        "--issued-at",
        type=time_arg,
        metavar="TIME",
        help="the token's iat, ISO 8601 or 'now' (without it, any time-based revocation decides)",
    )
    p.add_argument("--client-id", metavar="ID", help="the token's client_id")
    p.add_argument("--azp", metavar="ID", help="the token's azp")
    p.add_argument("--tenant", metavar="ID", help="the token's tenant (tid)")
    p.add_argument("--kid", help="the token header's kid")
    p.add_argument(
        "--expect",
        choices=["allow", "revoked", "stale_claims"],
        help="exit 1 unless the decision is this",
    )
    p.add_argument("--timeout", type=seconds_arg, default=5.0, metavar="S", help="default 5")
    p.add_argument("--json", action="store_true", help="print the endpoint's JSON answer")
    p.set_defaults(handler=run)


def _ask(url: str, params: dict[str, str], timeout: float) -> dict[str, Any]:
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ConfigError(f"--url {url!r} must start with http:// or https://")
    try:
        response = httpx.get(f"{base}/revocast/inspect", params=params, timeout=timeout)
    except httpx.HTTPError as exc:
        raise InfrastructureError(
            f"cannot reach {base}: {exc or type(exc).__name__} (is the service running with "
            "--metrics-port, and is this its address?)"
        ) from None
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if response.status_code == 404:
        raise ConfigError(f"{base} has no /revocast/inspect: is it a revocast consumer's port?")
    if response.status_code != 200 or not isinstance(body, dict):
        detail = body.get("error") if isinstance(body, dict) else response.text[:200]
        raise ConfigError(f"{base} refused the question ({response.status_code}): {detail}")
    return body


def _since(value: Any) -> str:
    if not isinstance(value, int | float):
        return ""
    return f" since {datetime.fromtimestamp(value, UTC).isoformat(timespec='milliseconds')}"


def run(args: argparse.Namespace) -> int:
    params = {
        name: str(getattr(args, attr))
        for attr, name in _PARAMS.items()
        if getattr(args, attr) is not None
    }
    if args.issued_at is not None:
        params["iat"] = f"{args.issued_at.timestamp():.3f}"
    if not params:
        raise ConfigError("name what to ask about: --subject, --session-id, --jti, --client-id …")
    answer = _ask(args.url, params, args.timeout)
    decision = answer.get("decision", {})
    verdict = str(decision.get("verdict"))
    if args.json:
        print_json(answer)
    else:
        fresh = answer.get("freshness", {})
        rule = f" ({decision['rule']})" if decision.get("rule") else ""
        detail = f": {decision['detail']}" if decision.get("detail") else ""
        print(f"{answer.get('service')}/{answer.get('instance')}: {verdict}{rule}{detail}")
        if decision.get("since") is not None:
            print(f"  decided by a fact{_since(decision['since'])}")
        view = "fresh" if fresh.get("fresh") else f"stale ({fresh.get('reason')})"
        through = ", ".join(f"{p}:{o}" for p, o in answer.get("applied_through", {}).items())
        print(f"  view: {view}; applied through partition:offset {through or 'nothing yet'}")
    if args.expect is not None and verdict != args.expect:
        raise ConfigError(f"expected {args.expect}, the service decided {verdict}")
    return 0
