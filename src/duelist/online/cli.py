"""``duelist methods [--markdown | --update-docs FILE]``: every registered online method, its paper, its
round, the loss it trains with, its reference, parameters with defaults, and its tabular twin."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "methods",
        help="list the online self-play methods",
        description="List every registered online method. Choose one in a config's online section with "
        "online: {method: {name: ..., <params>}, prompts: ..., judge: ...}.",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--markdown", action="store_true", help="print the markdown table of docs/online.md")
    g.add_argument("--update-docs", metavar="FILE", help="rewrite the generated table in FILE (docs/online.md)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from duelist.online.docs import COLUMNS, render_table, rows, update_docs

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

    table = Table(title="duelist methods", show_lines=True)
    for c in COLUMNS:
        table.add_column(c, overflow="fold")
    for row in rows():
        table.add_row(*(escape(c.replace("`", "")) for c in row))
    Console().print(table)
    return 0
