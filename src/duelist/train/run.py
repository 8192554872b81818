"""Assemble a training run: accelerator, output folder, source of examples, learner; then the step loop.

The source is chosen by the config's shape: an ``online:`` section makes an online self-play run (prompts
sampled, judged and turned into examples each round), a ``reward_model:`` section trains a reward or preference
model on ``data.train`` (``duelist.train.reward``: its own source and learner), else the offline plan over
``data.train``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from duelist.config import Config
from duelist.data.tokenize import TokenizedPair
from duelist.models.load import load_tokenizer
from duelist.train.host import default_threads, keep_freed_memory
from duelist.train.learner import Learner
from duelist.train.loop import Source, TrainResult, fit, run_step
from duelist.train.offline import OfflineSource


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
    busy = out.exists() and any(out.iterdir())
    if busy and not resume and not overwrite:
        raise FileExistsError(
            f"{out} already holds a run; pass --resume to continue it, --overwrite to replace it, "
            "or set train.output_dir"
        )
    if busy and overwrite and not resume and acc.is_main_process:
        shutil.rmtree(out)
    acc.wait_for_everyone()


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
    ``model``/``tokenizer`` (the policy), ``sampler``/``judge`` (an online run's)."""

    def __init__(
        self,
        cfg: Config,
        resume: bool = False,
        overwrite: bool = False,
        pairs: list[TokenizedPair] | None = None,
        model: torch.nn.Module | None = None,
        tokenizer: Any = None,
        **online_kw: Any,
    ):
        from accelerate.utils import set_seed

        self.cfg = cfg
        self.acc = make_accelerator(cfg)
        check_output_dir(Path(cfg.train.output_dir), self.acc, resume, overwrite)
        set_seed(cfg.train.seed)
        online_kw = {"tokenizer": tokenizer, **online_kw} if cfg.online is not None else {}
        self.source = make_source(cfg, self.acc, pairs, **online_kw)  # data is validated before any model loads
        self.learner = self._learner(model, tokenizer)
        self.source.attach(self.learner)
        self.start = 0
        if resume:
            self.start, tensors = self.learner.resume()
            self.source.load_state(tensors, self.learner)

    def _learner(self, model: torch.nn.Module | None, tokenizer: Any) -> Any:
        if self.cfg.reward_model is not None:
            from duelist.train.reward import RewardLearner

            src = self.source
            models = None if model is None else [model]
            return RewardLearner(self.cfg, self.acc, src.kind, src.total_updates, len(src.users), models, tokenizer)
        return Learner(self.cfg, self.acc, self.source.loss, self.source.total_updates, model, tokenizer)

    def fit(self) -> TrainResult:
        return fit(self.source, self.learner, self.start)

    def step(self, step: int) -> dict[str, float]:
        return run_step(self.source, self.learner, step)


def train(cfg: Config, resume: bool = False, overwrite: bool = False) -> TrainResult:
    return Run(cfg, resume=resume, overwrite=overwrite).fit()
