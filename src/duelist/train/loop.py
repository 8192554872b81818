"""The step loop: one loop for every source of examples.

A step asks the source for its work (examples, the reference to score them against, and the updates to
take: each a list of this process's micro-batches), has the learner take those updates, lets the source
move its anchors, then logs and checkpoints. Each update checks its losses, log-probs and gradient norm
before the optimizer uses them (``Learner.update``: stop, or skip with ``train.on_nonfinite=skip``). Offline,
a step is one update on a batch of the data set; online, a step is a round (sample, judge, build examples,
update).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from duelist.losses import LossBase
from duelist.models.reference import Reference
from duelist.train.learner import SKIPPED, Example, Learner
from duelist.train.logger import RunLogger


@dataclass
class StepWork:
    """What one step trains on: ``updates`` optimizer steps, each a list of micro-batches of indices into
    ``examples``; ``metrics``: what the source measured while preparing it (e.g. a round's judge rewards);
    ``where``: each example's source record (``pairs.jsonl, record 12``), if it has one."""

    examples: Sequence[Example]
    updates: list[list[list[int]]]
    reference: Reference
    metrics: dict[str, float] = field(default_factory=dict)
    where: Sequence[str] | None = None


class Source(Protocol):
    """Where examples come from. ``total_steps`` loop steps, ``total_updates`` optimizer steps in all (the
    learning-rate schedule's length); ``card`` goes into ``final/duelist.json``."""

    loss: LossBase
    total_steps: int
    total_updates: int
    card: dict[str, Any]

    def attach(self, learner: Learner) -> None:
        """Called once the learner (and its model) exists: e.g. precompute a whole-run reference."""

    def work(self, step: int, learner: Learner) -> StepWork: ...

    def finish(self, step: int, learner: Learner) -> dict[str, float]:
        """After the step's updates: move anchors; returns metrics to log with the step."""

    def state(self) -> dict[str, torch.Tensor]:
        """What must be checkpointed besides the learner (restored by ``load_state``)."""

    def load_state(self, tensors: dict[str, torch.Tensor], learner: Learner) -> None: ...


@dataclass
class TrainResult:
    output_dir: Path
    final_dir: Path | None
    history: list[dict[str, float]]


ADDITIVE = ("tokens", SKIPPED)


def mean_metrics(updates: list[dict[str, float]]) -> dict[str, float]:
    """Metrics of several updates: counts (tokens, skipped updates) add up, everything else is averaged."""
    keys = dict.fromkeys(k for u in updates for k in u)
    return {k: (sum if k in ADDITIVE else _avg)([u[k] for u in updates if k in u]) for k in keys}


def _avg(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def run_step(source: Source, learner: Learner, step: int) -> dict[str, float]:
    """One step of the loop: the source's work, the learner's updates, the source's anchors."""
    t0 = time.perf_counter()
    work = source.work(step, learner)
    t1 = time.perf_counter()
    updates = [learner.update(work.examples, micro, work.reference, step + 1, work.where) for micro in work.updates]
    m = {**work.metrics, **mean_metrics(updates)}
    m.setdefault("tokens", 0.0)  # a round whose examples were all filtered out takes no update
    t2 = time.perf_counter()
    m.update(source.finish(step, learner))
    m["step_time"] = time.perf_counter() - t0
    m["time/prepare"], m["time/update"] = t1 - t0, t2 - t1  # online: sampling, judging, scoring vs training
    m["tokens_per_s"] = m["tokens"] / m["step_time"]
    return m


def fit(source: Source, learner: Learner, start: int = 0) -> TrainResult:
    """Run steps ``start … total_steps − 1``, checkpoint every ``train.save_every`` steps and at the end, then
    save ``final/``. A step that stops (e.g. on a non-finite value) leaves the log at the previous step and
    the newest checkpoint as it was: nothing of it is written."""
    cfg, acc, out = learner.cfg, learner.acc, learner.out
    total = source.total_steps
    logger = RunLogger(out, total, start, cfg.train.progress, cfg.train.tensorboard) if acc.is_main_process else None
    history = []
    t_start = time.perf_counter()
    try:
        for step in range(start, total):
            m = run_step(source, learner, step)
            history.append({"step": step + 1, **m})
            if logger and ((step + 1) % cfg.train.log_every == 0 or step + 1 == total):
                logger.log(step + 1, m)
            if cfg.train.save_every and (step + 1) % cfg.train.save_every == 0 and step + 1 < total:
                learner.save(step + 1, source.state())
    finally:
        if logger:
            logger.close()
    learner.save(total, source.state())
    final = learner.save_final(source.card) if cfg.train.save_final else None
    skipped = sum(m.get(SKIPPED, 0.0) for m in history)
    note = f" ({skipped:.0f} updates skipped for non-finite values)" if skipped else ""
    learner.log(f"trained {total - start} steps in {time.perf_counter() - t_start:.1f}s{note} → {out}")
    return TrainResult(out, final, history)
