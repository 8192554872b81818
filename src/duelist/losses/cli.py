"""``duelist losses [--markdown | --json | --update-docs FILE]``: every registered loss, its paper, formula,
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
    g.add_argument("--json", action="store_true", help="print every loss as JSON (name, paper, parameters, needs)")
    g.add_argument("--update-docs", metavar="FILE", help="rewrite the generated table in FILE (docs/losses.md)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from duelist.losses.docs import COLUMNS, render_table, rows, update_docs
    from duelist.tables import Column, print_json, print_table

    if args.json:
        from duelist.losses import list_losses

        print_json(list_losses())
        return 0
    if args.markdown:
        print(render_table(), end="")
        return 0
    if args.update_docs:
        changed = update_docs(args.update_docs)
        print(f"{args.update_docs}: {'updated' if changed else 'already up to date'}")
        return 0
    cols = [Column(c, wrap=i > 0) for i, c in enumerate(COLUMNS)]
    print_table("duelist losses", cols, [(row[0].strip("`"), *row[1:]) for row in rows()])
    return 0
