"""The online-methods table of ``docs/online.md`` and ``duelist methods``, generated from the registry."""

from __future__ import annotations

from pathlib import Path

from duelist.docs_tables import block_in, markers, render, update_block
from duelist.online.registry import registry

TABLE_START, TABLE_END = markers("methods", "duelist methods")
COLUMNS = ("name", "paper", "round", "loss", "reference", "parameters (defaults)", "tabular twin")


def rows() -> list[tuple[str, ...]]:
    """One row per registered online method."""
    out = []
    for spec in sorted(registry().values(), key=lambda s: s.name):
        loss = spec.loss(dict(spec.defaults))
        ref = {"initial": "π_ref (moved every `refresh_every` rounds if > 0)", "previous": "π_t"}[spec.reference]
        if spec.anchors:
            ref += " + anchors: " + ", ".join(spec.anchors)
        twin = "–"
        if spec.twin is not None:
            when = ", ".join(f"{k}={v}" for k, v in spec.twin.when.items())
            twin = f"`{spec.twin.algorithm}`" + (f" (with {when})" if when else "")
        out.append((f"`{spec.name}`", spec.paper, spec.rule, f"`{loss['name']}`", ref,
                    ", ".join(spec.describe_params()), twin))
    return out


def render_table() -> str:
    return render(COLUMNS, rows())


def table_in(text: str) -> str:
    return block_in(text, TABLE_START, TABLE_END)


def update_docs(path: str | Path) -> bool:
    return update_block(path, TABLE_START, TABLE_END, render_table())
