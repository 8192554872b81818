"""``duelist tasks [list | build NAME] [--json]``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list built-in tasks, or rebuild one's shipped data")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    tsub = p.add_subparsers(dest="action")
    lp = tsub.add_parser("list", help="list built-in tasks (default)")
    lp.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the list as JSON")
    b = tsub.add_parser("build", help="regenerate a task's shipped files reproducibly")
    b.add_argument("name")
    b.add_argument("--source", type=Path, help="raw source file (movie-snippets text file; HH-RLHF jsonl.gz)")
    b.add_argument("--out", type=Path, help="output folder (default: the task's folder in the package)")
    b.add_argument("--samples", type=int, help="samples per prompt when building pairs (default: the builder's)")
    b.add_argument("--limit", type=int, help="only the first N prompts (default: the builder's)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from duelist.data import tasks
    from duelist.tables import Column, print_json, print_table

    if args.action == "build":
        from duelist.data.tasks.builders import BUILDERS

        if args.name not in BUILDERS:
            import sys

            print(f"duelist tasks: error: no builder for {args.name!r}; buildable: {', '.join(BUILDERS)}",
                  file=sys.stderr)
            return 2
        out = args.out or tasks.HERE / tasks.get(args.name).folder
        given = {"samples": args.samples, "limit": args.limit}
        BUILDERS[args.name](args.source, out, **{k: v for k, v in given.items() if v is not None})
        return 0
    listed = [tasks.TASKS[name] for name in tasks.names()]
    if args.json:
        print_json([{"name": t.name, "splits": list(t.splits), "oracle": t.judge, "description": t.description}
                    for t in listed])
        return 0
    rows = [(t.name, ", ".join(t.splits), t.judge or "human labels", t.description) for t in listed]
    print_table("built-in tasks", ["name", "splits", "oracle", Column("description", wrap=True)], rows)
    return 0
