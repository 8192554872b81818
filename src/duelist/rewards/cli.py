"""``duelist reward-kinds [--markdown | --update-docs FILE]``: every registered reward/preference model kind."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reward-kinds",
        help="list the registered reward and preference model kinds",
        description="List every registered model kind: name, paper, formula, parameters with defaults, what its "
        "head reads and whether it gives a scalar reward or only pairwise preferences.",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--markdown", action="store_true", help="print the markdown table of docs/reward_models.md")
    g.add_argument("--update-docs", metavar="FILE", help="rewrite the generated table in FILE (docs/reward_models.md)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from duelist.rewards.docs import COLUMNS, render_table, rows, update_docs

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

    table = Table(title="duelist reward-kinds", show_lines=True)
    for c in COLUMNS:
        table.add_column(c, overflow="fold")
    for row in rows():
        table.add_row(*(escape(c) for c in (row[0].strip("`"), *row[1:])))
    Console().print(table)
    return 0
