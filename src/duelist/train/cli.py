"""``duelist train CONFIG [key=value ...] [--resume]``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a policy on preference pairs",
        description="Train on preference pairs. CONFIG is a YAML file or a bundled config name; "
        "key=value arguments override it (e.g. loss.beta=0.2 train.steps=10).",
    )
    p.add_argument("args", nargs="*", metavar="CONFIG | key=value")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in train.output_dir")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in train.output_dir")
    p.add_argument(
        "--allow-config-change",  # resume_guard.ALLOW_FLAG (not imported here: the CLI starts light)
        dest="allow_config_change",
        action="store_true",
        help="with --resume: continue although settings that change the training math differ from the run's "
        "config.yaml (the change is recorded in the run folder's config_changes.jsonl)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from duelist.config import load_config
    from duelist.config_files import resolve_config, split_args
    from duelist.train.run import train

    path, overrides = split_args(args.args)
    cfg = load_config(resolve_config(path), overrides)
    train(cfg, resume=args.resume, overwrite=args.overwrite, allow_config_change=args.allow_config_change)
    return 0
