"""Choose each tournament entrant's learning rate on training prompts, never on the tournament's test prompts.

For every entrant of a tournament file and every learning rate of the grid, train the entrant at that rate
(same budget: the file's steps, batch and K), then play all of them and the reference on validation prompts:
training-split prompts that no entrant saw (the online entrants' first ``steps × batch`` prompts of the seeded
order and offline DPO's pairs' prompts are excluded). Each entrant's chosen rate is the one with the highest
win-rate against the reference there. The tournament file's own finished entrants are reused at its rate.

    python scripts/select_tournament_lr.py intransitive-tournament --lr 5e-5 1.5e-4 \
        --grid inpo=5e-5,1.5e-4,4.5e-4   # a grid extended past the edge where the best rate was

Writes ``<out>/validation_prompts.jsonl``, ``<out>/tournament.json`` (the validation matrix) and
``<out>/choice.json`` (entrant → chosen rate, with every rate's win-rate and interval).
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from duelist.config import Config
from duelist.config_files import resolve_config
from duelist.data.formats import record_prompt
from duelist.data.sources import read_records
from duelist.eval.tournament.config import load_tournament_file
from duelist.eval.tournament.entrants import entrant_configs, finished, train_entrants
from duelist.eval.tournament.run import run_tournament
from duelist.train.plan import BatchPlan


def seen_prompts(cfgs: dict[str, Config]) -> set[str]:
    """The prompts (as JSON) any entrant trains on within its budget."""
    seen = set()
    for cfg in cfgs.values():
        spec = cfg.online.prompts if cfg.online else cfg.data.train
        records = [record_prompt(r) for r in read_records(spec, "train")]
        plan = BatchPlan(len(records), cfg.train.batch_size, cfg.train.seed, shuffle=cfg.data.shuffle)
        for step in range(cfg.train.steps or 0):
            seen.update(json.dumps(records[i], sort_keys=True) for i in plan.global_batch(step))
    return seen


def validation_prompts(cfgs: dict[str, Config], n: int) -> list[object]:
    online = next(c for c in cfgs.values() if c.online)
    pool = [record_prompt(r) for r in read_records(online.online.prompts, "train")]
    seen = seen_prompts(cfgs)
    fresh = [p for p in reversed(pool) if json.dumps(p, sort_keys=True) not in seen]
    return fresh[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="a tournament file with entrants (or a bundled config's name)")
    ap.add_argument("--lr", type=float, nargs="+", required=True, help="the learning-rate grid")
    ap.add_argument("--grid", nargs="*", default=[], metavar="NAME=LR,LR",
                    help="another grid for one entrant, e.g. inpo=1.5e-4,4.5e-4 (a grid extended past its edge)")
    ap.add_argument("--policy", nargs="*", default=[], metavar="NAME@LR=RUN",
                    help="a finished run of another method to validate alongside (e.g. dno@5e-05=runs/dno)")
    ap.add_argument("--only", nargs="*", default=None, metavar="NAME", help="sweep these entrants only")
    ap.add_argument("--prompts", type=int, default=64, help="validation prompts")
    ap.add_argument("--jobs", type=int, default=1,
                    help="entrants trained at once, sharing the cores (an all-pairs entrant at K = 4: about 12 GB)")
    ap.add_argument("--out", default=None, help="default: <tournament.output_dir>-lr")
    a = ap.parse_args()

    tf = load_tournament_file(resolve_config(a.config))
    base = entrant_configs(tf)
    out = Path(a.out or f"{tf.tournament.output_dir}-lr")
    out.mkdir(parents=True, exist_ok=True)
    val = validation_prompts(base, a.prompts)
    val_file = out / "validation_prompts.jsonl"
    val_file.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in val))

    reused, todo = {}, {}
    grids = {name: [float(x) for x in g.split(",")] for name, g in (s.split("=") for s in a.grid)}
    for name, cfg in base.items():
        if a.only is not None and name not in a.only:
            continue
        for lr in grids.get(name, a.lr):
            key = f"{name}@{lr:g}"
            at_lr = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"lr": lr})})
            if lr == cfg.optim.lr and finished(cfg):
                reused[key] = cfg.train.output_dir
            else:
                run_dir = str(out / key.replace("@", "-lr"))
                share = {"output_dir": run_dir, "threads": max(1, (os.cpu_count() or 1) // a.jobs)}
                todo[key] = at_lr.model_copy(update={"train": at_lr.train.model_copy(update=share)})
    # threads only wait: each entrant trains in its own child process on its share of the cores, the next
    # free worker taking the next entrant (finished runs in ``out`` are reused)
    with ThreadPoolExecutor(a.jobs) as pool:
        list(pool.map(lambda item: train_entrants(dict([item])), todo.items()))

    tcfg = tf.tournament.model_copy(update={"prompts": str(val_file), "num_prompts": len(val), "output_dir": str(out)})
    extra = dict(p.split("=", 1) for p in a.policy)
    policies = {**reused, **{k: c.train.output_dir for k, c in todo.items()}, **extra, "reference": "reference"}
    result = run_tournament(policies, tcfg)
    ref = result["policies"].index("reference")
    choice: dict[str, dict] = {}
    for i, key in enumerate(result["policies"]):
        if key == "reference":
            continue
        name, lr = key.split("@")
        row = {"win_rate": result["matrix"][i][ref], "lower": result["lower"][i][ref], "upper": result["upper"][i][ref]}
        choice.setdefault(name, {"rates": {}})["rates"][lr] = row
    for name, c in choice.items():
        c["chosen"] = max(c["rates"], key=lambda lr: c["rates"][lr]["win_rate"])
        print(name, c["chosen"], {lr: round(r["win_rate"], 3) for lr, r in c["rates"].items()})
    (out / "choice.json").write_text(json.dumps(choice, indent=1))


if __name__ == "__main__":
    main()
