"""``duelist check CONFIG [key=value ...] [--json]``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="validate a config and its data and show what training would see, without training",
        description="Validate the config, read and validate all data, resolve the model and tokenizer (without "
        "loading weights) and print what training would see: records kept and skipped, the data's format, "
        "token-length percentiles, pairs over the length limits, steps and epochs, the output folder's state. "
        "Exit code 0 when training could start, 2 when it would stop.",
    )
    p.add_argument("args", nargs="*", metavar="CONFIG | key=value")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from duelist.config import load_config
    from duelist.config_files import resolve_config, split_args
    from duelist.data.check import check, render
    from duelist.tables import print_json

    path, overrides = split_args(args.args)
    resolved = resolve_config(path)
    cfg = load_config(resolved, overrides)
    label = " ".join([str(resolved) if resolved else "(defaults)", *overrides])
    report = check(cfg, label)
    if args.json:
        print_json(report.as_dict())
    else:
        print(render(report))
    if not report.ok:
        d = report.data
        print(
            f"duelist check: error: {len(d.invalid)} invalid record(s) (listed above); training would stop: "
            "fix them or set data.on_invalid=skip",
            file=sys.stderr,
        )
        return 2
    return 0
