"""``duelist tasks [list | build NAME]``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list built-in tasks, or rebuild one's shipped data")
    tsub = p.add_subparsers(dest="action")
    tsub.add_parser("list", help="list built-in tasks (default)")
    b = tsub.add_parser("build", help="regenerate a task's shipped files reproducibly")
    b.add_argument("name")
    b.add_argument("--source", type=Path, help="raw source file (movie-snippets text file; HH-RLHF jsonl.gz)")
    b.add_argument("--out", type=Path, help="output folder (default: the task's folder in the package)")
    b.add_argument("--samples", type=int, default=4, help="samples per prompt when building pairs")
    b.add_argument("--limit", type=int, help="only the first N prompts")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from duelist.data import tasks

    if args.action == "build":
        from duelist.data.tasks.builders import BUILDERS

        if args.name not in BUILDERS:
            raise KeyError(f"no builder for {args.name!r}; buildable: {', '.join(BUILDERS)}")
        out = args.out or tasks.HERE / tasks.get(args.name).folder
        BUILDERS[args.name](args.source, out, samples=args.samples, limit=args.limit)
        return 0
    t = Table(title="built-in tasks")
    for col in ("name", "splits", "oracle", "description"):
        t.add_column(col)
    for name in tasks.names():
        task = tasks.TASKS[name]
        t.add_row(name, ", ".join(task.splits), task.judge or "human labels", task.description)
    Console().print(t)
    return 0
