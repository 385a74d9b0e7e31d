"""Tables for the terminal and for logs: never truncated, one unit per column.

On a terminal, :func:`print_table` draws a rich table sized to the terminal's
width: text columns fold onto a second line when space runs out, number columns
are never shortened (their minimum width is their longest value). When the
output is a pipe or a file (CI logs, ``| tee``), it prints plain rows instead:
the header and one line per row, columns padded to their widest cell, no box
characters, no wrapping, no ellipsis - so ``grep`` and ``cut`` work on them.

The unit lives in the header (``p99 (ms)``), never in the cells, and every cell
of a column uses it; :func:`num` formats a number in fixed point (never
``4.053e-05``), with thousands separators and about three significant digits.

    print_table(console, "Burst", [Col("service"), Col("p50", "ms"), Col("p99", "ms")],
                [["orders", num(3.21), num(12.5)]])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["Col", "num", "plain_rows", "print_table"]


@dataclass(frozen=True)
class Col:
    name: str
    unit: str | None = None
    numeric: bool | None = None
    """Right-aligned and never folded; default: True when the column has a unit."""

    @property
    def header(self) -> str:
        return f"{self.name} ({self.unit})" if self.unit else self.name

    @property
    def is_numeric(self) -> bool:
        return self.numeric if self.numeric is not None else self.unit is not None


def num(value: float | int | None, digits: int | None = None) -> str:
    """A number in fixed point: ``-`` for None, ``12,345`` for ints, about three
    significant digits for floats (``0.0405``, ``3.21``, ``12.5``, ``1,528``), or
    exactly ``digits`` decimals when given."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if digits is not None:
        return f"{value:,.{digits}f}"
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if magnitude >= 100:
        return f"{value:,.0f}"
    decimals = max(1, 2 - math.floor(math.log10(magnitude)))
    return f"{value:,.{min(decimals, 9)}f}"


def plain_rows(columns: Sequence[Col], rows: Sequence[Sequence[str]]) -> list[str]:
    """Header and rows as padded plain text lines (numbers right-aligned)."""
    cells = [[Text.from_markup(c).plain for c in row] for row in rows]
    headers = [c.header for c in columns]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if col.is_numeric else v.ljust(w)
            for v, w, col in zip(values, widths, columns, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return [line(headers)] + [line(r) for r in cells]


def print_table(
    console: Console,
    title: str,
    columns: Sequence[Col],
    rows: Sequence[Sequence[str]],
    *,
    caption: str | None = None,
) -> None:
    """Print a table: rich on a terminal, plain rows otherwise (see the module docstring)."""
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"row has {len(row)} cells, table {title!r} has {len(columns)}")
    if not console.is_terminal:
        console.print(title, markup=False, highlight=False, soft_wrap=True)
        for text in plain_rows(columns, rows):
            console.print(text, markup=False, highlight=False, soft_wrap=True)
        if caption:
            console.print(caption, markup=False, highlight=False, soft_wrap=True)
        console.print()
        return
    table = Table(title=title, caption=caption, expand=False)
    for i, col in enumerate(columns):
        if col.is_numeric:
            longest = max([len(Text.from_markup(r[i]).plain) for r in rows] or [1])
            table.add_column(col.header, justify="right", no_wrap=True, min_width=longest,
                             overflow="fold")
        else:
            table.add_column(col.header, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)
