"""``revocast keys generate``: an Ed25519 signing key (private JWK, 0600) and its public JWKS.

The private key file is created exclusively (never overwritten without ``--force``) with mode
0600 from the first byte; ``--add-to`` appends the public key to an existing JWKS for rotation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from revocast.commands import Subparsers
from schemas import ConfigError, KeySet, SigningKey

__all__ = ["register"]


def register(subparsers: Subparsers) -> None:
    keys = subparsers.add_parser("keys", help="signing keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    gen = ksub.add_parser("generate", help="generate an Ed25519 signing key")
    gen.add_argument("--kid", required=True, help="key id consumers will see")
    gen.add_argument("--out", required=True, type=Path, help="private JWK file to write (0600)")
    gen.add_argument("--jwks", type=Path, help="public JWKS file to write")
    gen.add_argument(
        "--add-to",
        type=Path,
        metavar="JWKS",
        help="existing JWKS to add the new public key to (rotation); written back to it "
        "unless --jwks is given",
    )
    gen.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    gen.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    kid = args.kid.strip()
    if not kid:
        raise ConfigError("--kid must not be empty")
    jwks: dict[str, Any] = {"keys": []}
    if args.add_to is not None:
        try:
            jwks = json.loads(args.add_to.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read JWKS {args.add_to}: {exc}") from None
        existing = KeySet.from_jwks(jwks)  # validates every key
        if kid in existing:
            raise ConfigError(f"{args.add_to} already has a key with kid {kid!r}: pick a new kid")
    target = args.jwks or args.add_to
    if target is not None and target.resolve() == args.out.resolve():
        raise ConfigError("--out and the JWKS file must differ: the JWKS is public")
    key = SigningKey.generate(kid)
    key.write_private(args.out, force=args.force)
    print(f"wrote private key {kid!r} to {args.out} (mode 0600; keep it secret)")
    if target is not None:
        jwks = {**jwks, "keys": [*jwks.get("keys", []), key.public_jwk()]}
        target.write_text(json.dumps(jwks, indent=2) + "\n")
        kids = KeySet.from_jwks(jwks).kids
        print(f"wrote JWKS {target}: trusts {', '.join(kids)}")
    return 0
