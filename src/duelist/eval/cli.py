"""``duelist eval CONFIG|RUN_DIR [key=value ...]``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="compare a trained policy with its reference under an oracle",
        description="Sample from the trained policy and its reference on held-out prompts; report "
        "win-rate with a 95%% interval, mean oracle reward and KL(policy || reference).",
    )
    p.add_argument("args", nargs="*", metavar="CONFIG | RUN_DIR | key=value")
    p.add_argument("--policy", help="policy model directory (default: <train.output_dir>/final)")
    p.add_argument("--out", help="where to write eval.json and eval.png (default: the run directory)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from duelist.config import load_config
    from duelist.config_files import resolve_config, split_args
    from duelist.eval.run import evaluate

    path, overrides = split_args(args.args)
    cfg = load_config(resolve_config(path), overrides)
    run_dir = Path(cfg.train.output_dir)
    policy = Path(args.policy) if args.policy else run_dir / "final"
    if not (policy / "config.json").is_file():
        raise FileNotFoundError(f"no trained model at {policy}; run `duelist train` first or pass --policy")
    out = Path(args.out) if args.out else run_dir
    evaluate(cfg, policy, out, metrics_file=run_dir / "metrics.jsonl", run_dir=run_dir if not args.policy else None)
    return 0
