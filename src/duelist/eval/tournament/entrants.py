"""Train a tournament's entrants from its file, each within the budget the file gives it, before the games.

Each entrant is a training config tree (the file's ``common`` tree merged under it) run into
``<tournament.output_dir>/<name>``. All configs are validated before anything trains; a folder that already
holds a finished run (``final/``) of the same config is reused, so an interrupted tournament picks up where it
stopped (an unfinished entrant is trained again from the start).

The budget table counts what each entrant consumed: prompts seen (rounds × prompts per round, or steps × pairs
per step offline) and responses judged (an offline pair is two judged responses; an online round judges K
samples per prompt, plus the mixture opponents of Nash-MD-style methods, twice for extragradient methods whose
half-step policy is sampled and judged again).

Each entrant trains in its own child process, so what one run holds (models, reference caches, the allocator's
arenas) goes back to the system before the next starts: the tournament's peak memory is one entrant's, not the
sum (six entrants in one process reached 13.7 GB).
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.queues import SimpleQueue
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from duelist.config import Config, ConfigError, _merge, config_from_tree, dump_config
from duelist.eval.tournament.config import TournamentFile

console = Console(stderr=True)


class EntrantFailed(RuntimeError):
    """An entrant's training child failed: a user's error, passed back as its one line, or a crash whose
    traceback the child printed."""


def entrant_configs(tf: TournamentFile, quick: bool = False) -> dict[str, Config]:
    """name → validated training config (output folder set); with ``quick``, the file's non-tournament
    ``quick`` overrides applied to every entrant."""
    extra = [f"{k}={v}" for k, v in tf.quick.items() if not k.startswith("tournament.")] if quick else []
    out = {}
    for name, tree in tf.entrants.items():
        if name in tf.tournament.policies:
            raise ConfigError(f"entrants.{name}: also named in tournament.policies; use one name per policy")
        run_dir = Path(tf.tournament.output_dir) / name
        try:
            out[name] = config_from_tree(_merge(tf.common, tree), [*extra, f"train.output_dir={run_dir}"])
        except ConfigError as e:
            raise ConfigError(f"entrants.{name}: {e}") from None
    return out


def budget(cfg: Config) -> tuple[int, int]:
    """(prompts seen, responses judged) of a training run with a fixed number of steps."""
    if cfg.train.steps is None:
        raise ConfigError(f"{cfg.train.output_dir}: a tournament entrant needs train.steps (an equal budget)")
    prompts = cfg.train.steps * cfg.train.batch_size
    if cfg.online is None:
        return prompts, 2 * prompts
    from duelist.online.registry import build_method

    m = build_method(cfg.online.method)
    per_prompt = (m.k + int(m.params.get("opponents", 0))) * (2 if m.spec.extragradient else 1)
    return prompts, prompts * per_prompt


def print_budget(cfgs: dict[str, Config]) -> None:
    t = Table(title="entrants and their budgets")
    for col in ("entrant", "trains with", "prompts seen", "responses judged"):
        t.add_column(col)
    for name, cfg in cfgs.items():
        how = f"online {cfg.online.method['name']}" if cfg.online else f"offline {cfg.loss['name']} on {cfg.data.train}"
        p, j = budget(cfg)
        t.add_row(name, how, str(p), str(j))
    Console(stderr=True).print(t)


def finished(cfg: Config) -> bool:
    """The output folder holds a finished run of exactly this config."""
    out = Path(cfg.train.output_dir)
    saved = out / "config.yaml"
    return (out / "final" / "config.json").is_file() and saved.is_file() and (
        yaml.safe_load(saved.read_text()) == yaml.safe_load(dump_config(cfg))
    )


def train_entrants(cfgs: dict[str, Config], threads: int | None = None) -> dict[str, str]:
    """Train every entrant not already finished, each in a child process; name → run folder."""
    for i, (name, cfg) in enumerate(cfgs.items(), 1):
        if finished(cfg):
            console.print(f"[{i}/{len(cfgs)}] {name}: reusing the finished run in {cfg.train.output_dir}")
            continue
        console.print(f"[{i}/{len(cfgs)}] training {name} → {cfg.train.output_dir}")
        ctx = multiprocessing.get_context("spawn")
        errors = ctx.SimpleQueue()
        child = ctx.Process(target=_train, args=(cfg, threads, errors), name=name)
        child.start()
        child.join()
        if not errors.empty():
            raise EntrantFailed(f"entrants.{name}: {errors.get()}")
        if child.exitcode != 0:
            raise EntrantFailed(f"entrants.{name}: training failed (exit code {child.exitcode}; its traceback is "
                                f"above); the entrants before it are finished and will be reused")
    return {name: cfg.train.output_dir for name, cfg in cfgs.items()}


def _train(cfg: Config, threads: int | None, errors: SimpleQueue) -> None:
    """The child: a user's error (bad data, a locked folder) goes back to the parent as one line."""
    from duelist.errors import USER_ERRORS
    from duelist.train.run import train

    if threads:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"threads": threads})})
    try:
        train(cfg, overwrite=True)
    except USER_ERRORS as e:
        errors.put(str(e))

