"""Assemble a training run: accelerator, output folder, source of examples, learner; then the step loop.

The source is chosen by the config's shape: an ``online:`` section makes an online self-play run (prompts
sampled, judged and turned into examples each round), a ``reward_model:`` section trains a reward or preference
model on ``data.train`` (``duelist.train.reward``: its own source and learner), else the offline plan over
``data.train``.

The output folder is the run's, alone: its lock (``lock.RunLock``) is taken before anything there is read or
changed and held until the run ends, so a second run on it stops naming the holder. Before any data or
model is loaded, ``--resume`` finds the newest intact checkpoint (``checkpoint.latest_intact_checkpoint``)
and checks the config against the run's ``config.yaml`` (``resume_guard``); the run then restores it.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import torch

from duelist.config import Config
from duelist.data.tokenize import TokenizedPair
from duelist.models.load import load_tokenizer
from duelist.train.checkpoint import latest_checkpoint
from duelist.train.host import default_threads, keep_freed_memory
from duelist.train.learner import Learner
from duelist.train.lock import RunLock, clear_run, run_files
from duelist.train.loop import Source, TrainResult, fit, run_step
from duelist.train.offline import OfflineSource
from duelist.train.resume_guard import CONFIG_FILE, Change, check_resume, record_changes, save_config


def make_accelerator(cfg: Config) -> Any:
    from accelerate import Accelerator

    # cpu=True is what makes accelerate treat a torchrun launch without GPUs as multi-process (gloo)
    acc = Accelerator(cpu=not torch.cuda.is_available())
    if acc.device.type == "cpu":
        torch.set_num_threads(cfg.train.threads or default_threads(acc.num_processes))
        if cfg.train.keep_freed_memory:
            keep_freed_memory()
    return acc


def check_output_dir(out: Path, acc: Any, resume: bool, overwrite: bool) -> None:
    """A new run needs an empty folder (its lock aside); ``overwrite`` empties it, keeping the lock."""
    busy = bool(run_files(out))
    if busy and not resume and not overwrite:
        raise FileExistsError(
            f"{out} already holds a run; pass --resume to continue it, --overwrite to replace it, "
            "or set train.output_dir"
        )
    if busy and overwrite and not resume and acc.is_main_process:
        clear_run(out)
    acc.wait_for_everyone()


def find_resume(out: Path, cfg: Config, allow: bool) -> tuple[Path | None, list[Change]]:
    """Before any data or model is loaded: the newest intact checkpoint (damaged newer ones are named on
    stderr; none intact is a ``CheckpointError``) and the math-changing differences from the run's saved
    config (refused unless ``allow``; none without a checkpoint: nothing was trained that they contradict)."""
    ckpt = latest_checkpoint(out)
    return ckpt, (check_resume(out, cfg, allow) if ckpt is not None else [])


def make_source(cfg: Config, acc: Any, pairs: list[TokenizedPair] | None = None, **online_kw: Any) -> Source:
    """``online_kw``: ``tokenizer``, ``sampler``, ``judge`` to use instead of the config's (online runs)."""
    if cfg.online is not None:
        from duelist.train.online import OnlineSource

        tokenizer = online_kw.pop("tokenizer", None) or load_tokenizer(cfg.model)
        return OnlineSource(cfg, acc, tokenizer, **online_kw)
    if cfg.reward_model is not None:
        from duelist.train.reward import RewardSource

        return RewardSource(cfg, acc, load_tokenizer(cfg.model), pairs)
    return OfflineSource(cfg, acc, load_tokenizer(cfg.model) if pairs is None else None, pairs)


class Run:
    """One training run, assembled and ready: ``fit()`` runs it, ``step(s)`` runs loop step ``s`` alone
    (benchmarks). Optional replacements for what the config names: ``pairs`` (an offline run's data),
    ``model``/``tokenizer`` (the policy), ``sampler``/``judge`` (an online run's). The run holds its output
    folder's lock until ``fit`` returns or ``close`` (or the object's end) releases it."""

    def __init__(
        self,
        cfg: Config,
        resume: bool = False,
        overwrite: bool = False,
        pairs: list[TokenizedPair] | None = None,
        model: torch.nn.Module | None = None,
        tokenizer: Any = None,
        allow_config_change: bool = False,
        **online_kw: Any,
    ):
        from accelerate.utils import set_seed

        self.cfg = cfg
        self.acc = make_accelerator(cfg)
        out = Path(cfg.train.output_dir)
        self.lock = RunLock(out) if self.acc.is_main_process else None  # one process per machine would do
        if self.lock is not None:
            self.lock.acquire()
            weakref.finalize(self, self.lock.release)
        try:
            check_output_dir(out, self.acc, resume, overwrite)
            ckpt, changes = find_resume(out, cfg, allow_config_change) if resume else (None, [])
            set_seed(cfg.train.seed)
            online_kw = {"tokenizer": tokenizer, **online_kw} if cfg.online is not None else {}
            self.source = make_source(cfg, self.acc, pairs, **online_kw)  # data is validated before any model loads
            self.learner = self._learner(model, tokenizer)
            self.source.attach(self.learner)
            self.start = 0
            if resume:
                self.start, tensors = self.learner.resume(ckpt)
                self.source.load_state(tensors, self.learner)
            if self.acc.is_main_process:
                if changes:
                    self.learner.log(record_changes(out, changes, self.start))
                if changes or not resume or not (out / CONFIG_FILE).is_file():
                    save_config(out, cfg)  # the config the run follows from here on
        except BaseException:
            self.close()
            raise

    def _learner(self, model: torch.nn.Module | None, tokenizer: Any) -> Any:
        if self.cfg.reward_model is not None:
            from duelist.train.reward import RewardLearner

            src = self.source
            models = None if model is None else [model]
            return RewardLearner(self.cfg, self.acc, src.kind, src.total_updates, len(src.users), models, tokenizer)
        return Learner(self.cfg, self.acc, self.source.loss, self.source.total_updates, model, tokenizer)

    def close(self) -> None:
        """Release the output folder's lock (the lock file goes; the folder too if the run created it and
        left it empty)."""
        if self.lock is not None:
            self.lock.release()

    def fit(self) -> TrainResult:
        try:
            return fit(self.source, self.learner, self.start)
        finally:
            self.close()

    def step(self, step: int) -> dict[str, float]:
        return run_step(self.source, self.learner, step)


def train(
    cfg: Config, resume: bool = False, overwrite: bool = False, allow_config_change: bool = False
) -> TrainResult:
    return Run(cfg, resume=resume, overwrite=overwrite, allow_config_change=allow_config_change).fit()
