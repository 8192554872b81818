"""Tables for listing commands that survive pipes: nothing is ever cut, and ``--json`` prints plain JSON.

rich's defaults suit a wide terminal but cut cells to "intransitive-revi…" in a narrow one and lay tables
out for 80 columns when the output is a pipe, so ``duelist tasks | grep`` misses names. Here:
* with no terminal (a pipe, a file) the table is drawn at its full natural width: every cell on one line;
* in a terminal, columns marked ``wrap`` (descriptions) wrap at words, the others (names, numbers) keep
  their full width, and a cell that still cannot fit folds onto the next line instead of being cut;
* cells are plain text, never rich markup (a formula's ``[...]`` stays as written).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

FULL_WIDTH = 10_000  # wide enough for any row: rich draws a table no wider than it needs


@dataclass(frozen=True)
class Column:
    name: str
    wrap: bool = False  # long prose that may wrap at words; other columns keep their full width
    justify: Literal["left", "right"] = "left"


def _console(file: Any = None) -> Any:
    from rich.console import Console

    out = file or sys.stdout
    terminal = out.isatty() if hasattr(out, "isatty") else False
    return Console(file=out) if terminal else Console(file=out, width=FULL_WIDTH)


def print_table(
    title: str | None, columns: Sequence[str | Column], rows: Sequence[Sequence[Any]], file: Any = None
) -> None:
    """Print one table (see the module docstring for how it fits its output)."""
    from rich.table import Table
    from rich.text import Text

    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    cells = [[str(v) for v in row] for row in rows]
    table = Table(title=title, show_lines=any(c.wrap for c in cols))
    for k, c in enumerate(cols):
        longest = max([len(c.name), *(len(r[k]) for r in cells)])
        table.add_column(
            c.name,
            justify=c.justify,
            overflow="fold",
            no_wrap=not c.wrap,
            min_width=None if c.wrap else longest,
        )
    for r in cells:
        table.add_row(*(Text(v) for v in r))
    console = _console(file)
    console.print(table, soft_wrap=False)


def print_json(obj: Any, file: Any = None) -> None:
    """Plain JSON on stdout (for ``--json``): no colours, no wrapping, UTF-8 kept."""
    print(json.dumps(obj, indent=1, ensure_ascii=False, default=str), file=file or sys.stdout)


def rows_as_records(columns: Sequence[str | Column], rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """The rows of a table as JSON objects keyed by column name."""
    names = [c.name if isinstance(c, Column) else c for c in columns]
    return [dict(zip(names, r, strict=True)) for r in rows]
