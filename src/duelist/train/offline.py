"""The offline source: a fixed data set of preference pairs, visited by a ``BatchPlan``.

records → validated examples → token pairs, all before any model is loaded; each step is one update on
``train.batch_size`` pairs. The reference is computed for the whole run before the first step (and cached
on disk), computed live per batch (losses that read its token distributions), or absent.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from duelist.config import Config
from duelist.data import transforms
from duelist.data.formats import validate
from duelist.data.sources import DataError, read_records
from duelist.data.tokenize import PairTokenizer, TokenizedPair
from duelist.losses import LossBase, LossConfigError, build_loss
from duelist.models.load import model_source
from duelist.models.reference import LiveReference, PrecomputedReference, Reference, micro_batch_key, precompute
from duelist.train.learner import Learner, console
from duelist.train.loop import StepWork
from duelist.train.plan import BatchPlan


def prepare_data(
    cfg: Config, tokenizer: Any, fields: dict[str, tuple[float | None, float | None]] | None = None
) -> tuple[list[TokenizedPair], list[str], str, bool]:
    """Read, validate, transform (``data.reward_augment``, ``data.flip_rate``) and tokenize every record before
    anything trains; returns pairs, each pair's source record (``pairs.jsonl, record 12``), a summary, and whether
    the records are conversations. ``fields``: numeric per-pair fields the loss reads (name → bounds), carried to
    the batches."""
    records = read_records(cfg.data.train, cfg.data.split)
    if cfg.data.limit:
        records = records[: cfg.data.limit]
    checked = validate(records, cfg.data.on_invalid, {**(fields or {}), **transforms.required_fields(cfg.data)})
    examples, note = transforms.apply(checked.examples, cfg.data)
    enc = PairTokenizer(tokenizer, cfg.data.max_length, cfg.data.max_prompt_length, cfg.data.truncation)
    pairs, kept, truncated = enc.many(examples)
    if not pairs:
        raise DataError(f"every pair of {cfg.data.train} is longer than data.max_length={cfg.data.max_length}")
    dropped = len(examples) - len(kept)
    summary = checked.summary() + (f"; {note}" if note else "")
    summary += f"; {truncated} truncated, {dropped} dropped (data.truncation={cfg.data.truncation})"
    where = [f"{examples[i].source}, record {examples[i].number}" for i in kept]
    return pairs, where, summary, examples[0].conversational


def reference_mode(cfg: Config, loss: LossBase) -> str:
    mode = cfg.train.reference
    if not loss.needs_reference:
        return "none"
    if mode == "none":
        raise ValueError(f"loss {loss.name!r} needs a reference model; train.reference=none is not possible")
    if mode == "auto":
        return "live" if loss.needs_token_kl else "precompute"
    if mode == "precompute" and loss.needs_token_kl:
        raise ValueError(f"loss {loss.name!r} reads the reference's token distributions; use train.reference=live")
    return mode


class OfflineSource:
    """A data set's pairs in a seeded plan; ``pairs`` (optional) replaces reading ``cfg.data`` (then a
    non-finite value names pairs by their index alone, without a source record)."""

    def __init__(self, cfg: Config, acc: Any, tokenizer: Any, pairs: list[TokenizedPair] | None = None):
        self.cfg, self.acc = cfg, acc
        self.loss = build_loss(cfg.loss)
        if self.loss.inputs != "pairs":
            raise LossConfigError(
                f"loss {self.loss.name!r} trains on single sampled responses; it is for online methods "
                "(an `online:` section), not for a data set of pairs"
            )
        self.ref_mode = reference_mode(cfg, self.loss)
        self.where: list[str] | None = None
        if pairs is None:
            pairs, self.where, summary, _ = prepare_data(cfg, tokenizer, self.loss.data_fields)
            if acc.is_main_process:
                console.print(f"data: {cfg.data.train}: {summary}")
        self.pairs = pairs
        self.plan = BatchPlan(
            len(pairs), cfg.train.batch_size, cfg.train.seed, acc.num_processes, acc.process_index,
            cfg.train.grad_accum, cfg.data.shuffle,
        )
        self.total_steps = self.total_updates = self.plan.total_steps(cfg.train.steps, cfg.train.epochs)
        self.card = {"loss": cfg.loss, "steps": self.total_steps}
        self.reference: Reference = Reference()

    def attach(self, learner: Learner) -> None:
        self.reference = self._make_reference(learner)

    def _make_reference(self, learner: Learner) -> Reference:
        if self.ref_mode == "none":
            return Reference()
        if self.ref_mode == "live":
            return LiveReference(learner.model, self.cfg.train.logprob_chunk, learner.autocast)
        micro = [mb for s in range(self.total_steps) for mb in self.plan.micro_batches(s)]
        # a compiled backbone scores the reference with its training graph: exactly the policy's step-1 values
        how = dict(layout=learner.layout, autocast=learner.autocast, training_graph=learner.compiled)
        key = micro_batch_key(learner.model, model_source(self.cfg.model), self.pairs, micro, **how)
        t0 = time.perf_counter()
        flat = precompute(learner.model, self.pairs, micro, learner.pad_id, self.cfg.train.logprob_chunk, key, **how)
        learner.log(
            f"reference log-probs for {len(flat['index']) // 2} pairs ready in {time.perf_counter() - t0:.1f}s "
            f"(cache key {key})"
        )
        return PrecomputedReference(flat, self.acc.device)

    def work(self, step: int, learner: Learner) -> StepWork:
        return StepWork(self.pairs, [self.plan.micro_batches(step)], self.reference, where=self.where)

    def finish(self, step: int, learner: Learner) -> dict[str, float]:
        return {}

    def state(self) -> dict[str, torch.Tensor]:
        return {}  # the plan is a function of the step

    def load_state(self, tensors: dict[str, torch.Tensor], learner: Learner) -> None:
        pass

