"""``duelist tournament CONFIG [tournament.key=value ...]``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tournament",
        help="every policy against every other under a judge: win-rate matrix, worst case, ranking",
        description="Sample each policy (run folders, model directories, 'reference', 'default') once on held-out "
        "prompts, judge every pair, and report the head-to-head win-rate matrix with 95%% intervals, each policy's "
        "worst-case win-rate against the field and a ranking; writes tournament.json and tournament.png. A file with "
        "'entrants' trains them first, each within its budget (a finished run of the same config is reused).",
    )
    p.add_argument("args", nargs="+", metavar="CONFIG | tournament.key=value",
                   help="a YAML file with a 'tournament:' section (or a bundled config's name), then overrides")
    p.add_argument("--quick", action="store_true", help="apply the file's 'quick' overrides (a small smoke run)")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 avoids oversubscription on a shared CPU)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from duelist.config import ConfigError
    from duelist.config_files import resolve_config, split_args
    from duelist.eval.tournament.config import load_tournament_file
    from duelist.eval.tournament.entrants import entrant_configs, print_budget, train_entrants
    from duelist.eval.tournament.run import run_tournament

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    path, overrides = split_args(args.args)
    if path is None:
        raise ConfigError("duelist tournament needs a config file with a 'tournament:' section")
    tf = load_tournament_file(resolve_config(path), overrides, quick=args.quick)
    cfgs = entrant_configs(tf, quick=args.quick)  # every entrant validated before any trains
    if cfgs:
        print_budget(cfgs)
    trained = train_entrants(cfgs, args.threads)
    run_tournament({**trained, **tf.tournament.policies}, tf.tournament)
    return 0
