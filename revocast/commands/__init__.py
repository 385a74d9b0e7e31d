"""The ``revocast`` commands: one module per command, each with ``register(subparsers)``.

``register`` adds the command's parser and sets its handler with
``parser.set_defaults(handler=run)``; ``run(args) -> int`` returns the exit code and raises
:class:`schemas.RevocastError` for anything the user can fix (``revocast.cli`` prints it in one
line). A new command is a new module here plus its name in ``revocast.cli.COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
from typing import TypeAlias

__all__ = ["Subparsers"]

# argparse does not export the type of add_subparsers()'s result.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
