"""The losses table of ``docs/losses.md`` and ``duelist losses``, generated from the registry.

``docs/losses.md`` holds the table between ``TABLE_START`` and ``TABLE_END``; a test checks that it
equals ``render_table()``, and ``duelist losses --update-docs docs/losses.md`` rewrites it.
"""

from __future__ import annotations

from pathlib import Path

from duelist.docs_tables import block_in, markers, render, update_block
from duelist.losses.registry import list_losses

TABLE_START, TABLE_END = markers("losses", "duelist losses")
COLUMNS = ("name", "paper", "formula", "parameters (defaults)", "needs")


def rows() -> list[tuple[str, str, str, str, str]]:
    """One row per registered loss: name, paper, formula, parameters with defaults, needs."""
    return [
        (f"`{d['name']}`", d["paper"], d["formula"], ", ".join(d["param_docs"]) or "–", ", ".join(d["needs"]))
        for d in list_losses()
    ]


def render_table() -> str:
    """The markdown table of every registered loss."""
    return render(COLUMNS, rows())


def table_in(text: str) -> str:
    return block_in(text, TABLE_START, TABLE_END)


def update_docs(path: str | Path) -> bool:
    """Rewrite the table block of ``path``; returns whether it changed."""
    return update_block(path, TABLE_START, TABLE_END, render_table())
