"""``duelist losses [--markdown | --update-docs FILE]``: every registered loss, its paper, formula,
parameters with defaults, and what it needs."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "losses",
        help="list the registered losses",
        description="List every registered loss: name, paper, formula, parameters with defaults, and what it "
        "needs. Choose one in a config with loss: {name: ..., <params>}, or a weighted sum with "
        "loss: {name: sum, terms: [{name: dpo}, {name: sft, weight: 0.005}]}.",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--markdown", action="store_true", help="print the markdown table of docs/losses.md")
    g.add_argument("--update-docs", metavar="FILE", help="rewrite the generated table in FILE (docs/losses.md)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from duelist.losses.docs import COLUMNS, render_table, rows, update_docs

    if args.markdown:
        print(render_table(), end="")
        return 0
    if args.update_docs:
        changed = update_docs(args.update_docs)
        print(f"{args.update_docs}: {'updated' if changed else 'already up to date'}")
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="duelist losses", show_lines=True)
    for c in COLUMNS:
        table.add_column(c, overflow="fold")
    for row in rows():
        table.add_row(*(escape(c) for c in (row[0].strip("`"), *row[1:])))
    Console().print(table)
    return 0
