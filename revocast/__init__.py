"""revocast: the application layer - the ``revocast`` command line (:mod:`revocast.cli`).

The libraries are :mod:`schemas` (the contract), :mod:`producer` and :mod:`consumers`.
``revocast.cli`` is imported on call, so ``python -m revocast.cli`` runs it cleanly.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``revocast`` command line; returns the exit code."""
    from revocast.cli import main as cli_main

    return cli_main(argv)
