"""The learner: model, optimizer, schedule and auxiliary models, and one update on the examples it is given.

It does not know where examples come from (a data set's plan, or an online round's judged samples) nor
which loss it trains: the loss declares what it reads (reference, per-example fields, auxiliary models,
pairs or single responses) and the learner hands it ``PreferenceStats`` or ``SampleStats``.

One update is one optimizer step over a list of micro-batches (index lists into ``examples``). Each
micro-batch's backward pass carries ``Σ_i w_i L_i / W``, with ``W`` the total weight of the step over every
process (``w_i = 1`` unless the example has a ``weight`` field), so the gradient is the weighted mean over
the whole step whatever its split over processes and accumulation (DDP averages over processes, hence the
factor of the process count).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from duelist.config import Config, ModelConfig
from duelist.data.collate import ExampleBatch, PairBatch, collate_pairs, collate_samples
from duelist.data.tokenize import Example
from duelist.losses import LossBase, LossConfigError, PreferenceStats, model_fields
from duelist.losses.stats import SampleStats
from duelist.models.load import load_model, model_source
from duelist.models.logprobs import LogProbModel, SequenceLogProbs, batch_logprobs, split_lm, unwrap_causal_lm
from duelist.models.reference import FrozenModel, PrecomputedReference, Reference, score_examples
from duelist.train.checkpoint import load_checkpoint, save_checkpoint, trainable
from duelist.train.nonfinite import NonFinite, NonFiniteError, find_nonfinite
from duelist.train.schedule import make_scheduler

console = Console(stderr=True)
WEIGHT = "weight"  # an example field scaling its loss (e.g. its probability in an exact population loss)
SKIPPED = "updates/skipped_nonfinite"  # metric: updates skipped for a NaN/inf (train.on_nonfinite=skip)


@dataclass
class Accumulated:
    """One update's forward and backward passes on this process: per-metric sums over its examples, token
    and example counts, and what the non-finite check reads — per-example losses and log-probs
    (``checked``: name → a tensor per micro-batch) for the examples ``records`` (indices, in that order)."""

    sums: dict[str, torch.Tensor]
    tokens: torch.Tensor
    count: torch.Tensor
    checked: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    records: list[int] = field(default_factory=list)


def make_stats(
    policy: SequenceLogProbs, ref: SequenceLogProbs | None, extra: dict[str, torch.Tensor] | None = None
) -> PreferenceStats:
    """Policy (and reference) log-probs of a ``PairBatch`` → the loss's inputs. ``extra``: per-pair data
    fields and auxiliary models' per-token log-probs, passed through as ``PreferenceStats.extra``."""
    pc, pr = policy.split()
    rc, rr = ref.split() if ref is not None else (None, None)
    return PreferenceStats(
        policy_chosen_logps=pc.sums,
        policy_rejected_logps=pr.sums,
        ref_chosen_logps=rc.sums if rc else None,
        ref_rejected_logps=rr.sums if rr else None,
        chosen_lengths=pc.counts,
        rejected_lengths=pr.counts,
        policy_chosen_token_logps=pc.token_logps,
        policy_rejected_token_logps=pr.token_logps,
        ref_chosen_token_logps=rc.token_logps if rc else None,
        ref_rejected_token_logps=rr.token_logps if rr else None,
        chosen_mask=pc.mask,
        rejected_mask=pr.mask,
        chosen_token_kl=pc.token_kl,
        rejected_token_kl=pr.token_kl,
        extra=dict(extra or {}),
    )


def make_sample_stats(
    policy: SequenceLogProbs, ref: SequenceLogProbs | None, extra: dict[str, torch.Tensor] | None = None
) -> SampleStats:
    """Policy (and reference) log-probs of a ``SampleBatch`` → a pointwise loss's inputs."""
    return SampleStats(
        policy_logps=policy.sums,
        ref_logps=ref.sums if ref is not None else None,
        lengths=policy.counts,
        policy_token_logps=policy.token_logps,
        ref_token_logps=ref.token_logps if ref is not None else None,
        mask=policy.mask,
        extra=dict(extra or {}),
    )


def resolve_layout(layout: str, model: nn.Module) -> str:
    """``auto``: variable-length packing with flash attention (it ignores 4-D masks), else the prompt
    computed once per pair, a row per pair (one packed row under a dense 4-D mask would make attention
    quadratic in the whole micro-batch: 1.55x slower per step on CPU at 8 pairs x 144 tokens)."""
    impl = getattr(unwrap_causal_lm(model).config, "_attn_implementation", None) or ""
    if layout != "auto":
        if layout.startswith("shared") and "flash" in impl:
            raise ValueError(f"train.layout={layout} needs 4-D attention masks, which {impl} ignores; use packed")
        return layout
    if "flash" in impl:
        return "packed"
    return "shared"


# updates from which ``train.compile``'s default turns the compile on (offline runs): on 2 CPU cores the compile
# of SmolLM2-135M took about 70 s and made each step about 5% faster (8 pairs x 144 tokens: 7.7 s a step, so
# 0.4 s saved), which repays it after about 180 steps; with length spread inductor recompiles (about 2.5 min)
# when a batch crosses one of its size thresholds, which the margin above 180 allows for once
COMPILE_PAYBACK_UPDATES = 250


def resolve_compile(cfg: Config, total_updates: int) -> bool:
    """``train.compile``, its default resolved: an offline run long enough to repay the compile. Never an online
    run by default: the policy also generates there, through the same backbone, at ever-changing shapes."""
    if cfg.train.compile is not None:
        return cfg.train.compile
    return cfg.online is None and total_updates >= COMPILE_PAYBACK_UPDATES


def keep_probs(recompute: bool | None) -> bool | None:
    """``train.logprob_recompute`` as the head's ``keep_probs``: its opposite, ``None`` (by size) as it is."""
    return None if recompute is None else not recompute


def make_optimizer(params: list[nn.Parameter], cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=o.lr, eps=o.eps, weight_decay=o.weight_decay)
    fused = o.fused if o.fused is not None else device.type in ("cuda", "cpu")
    return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, fused=fused)


class Learner:
    """Owns the trained model and its optimizer state; ``update`` takes one optimizer step.

    ``model``/``tokenizer`` (optional) replace loading ``cfg.model`` (tests, the game twins)."""

    def __init__(
        self,
        cfg: Config,
        acc: Any,
        loss: LossBase,
        total_updates: int,
        model: nn.Module | None = None,
        tokenizer: Any = None,
    ):
        self.cfg, self.acc, self.loss = cfg, acc, loss
        self.out = Path(cfg.train.output_dir)
        if model is None:
            model, tokenizer = load_model(cfg.model, acc.device)
        self.model, self.tokenizer = model, tokenizer
        self.pad_id = tokenizer.pad_token_id
        self.layout = resolve_layout(cfg.train.layout, model)
        self.autocast = {"no": None, "bf16": torch.bfloat16}[cfg.train.mixed_precision]
        self.compiled = resolve_compile(cfg, total_updates)
        if self.compiled:
            split_lm(model)[0].compile(dynamic=True)
        pointwise = loss.inputs == "samples"
        self.collate = collate_samples if pointwise else collate_pairs
        self.stats = make_sample_stats if pointwise else make_stats
        self.logp_names = ("logps/sample",) if pointwise else ("logps/chosen", "logps/rejected")
        self.aux = self._make_aux_models()
        self.total_updates = total_updates
        self.optimizer = make_optimizer(list(trainable(model).values()), cfg, acc.device)
        self.scheduler = make_scheduler(self.optimizer, total_updates, cfg.optim.warmup, cfg.optim.schedule)
        self.module, self.optimizer = acc.prepare(
            LogProbModel(model, cfg.train.logprob_chunk, keep_probs(cfg.train.logprob_recompute), self.autocast),
            self.optimizer,
        )

    def log(self, msg: str) -> None:
        if self.acc.is_main_process:
            console.print(msg)

    def _make_aux_models(self) -> dict[str, Reference | None]:
        """Frozen models whose per-token log-probs the loss reads (prefix → scorer; None = the reference)."""
        out: dict[str, Reference | None] = {}
        for m in self.loss.aux_models:
            if m.source is None:
                raise LossConfigError(
                    f"{m.key} is required to train with loss {self.loss.name!r}: a model directory or hub id "
                    "(sharing the policy's tokenizer), or 'reference'"
                )
            if m.source == "reference":
                out[m.prefix] = None
                continue
            model, tok = load_model(ModelConfig(name=m.source, dtype=self.cfg.model.dtype), self.acc.device)
            if tok.get_vocab() != self.tokenizer.get_vocab():
                raise LossConfigError(f"{m.key}={m.source!r}: its tokenizer differs from the policy's")
            out[m.prefix] = FrozenModel(model, self.cfg.train.logprob_chunk, self.autocast)
            self.log(f"{m.key}: scoring with frozen {m.source}")
        return out

    def _extra_inputs(self, batch: ExampleBatch, ref: SequenceLogProbs | None) -> dict[str, torch.Tensor]:
        """Per-example data fields of the batch plus each auxiliary model's per-token log-probs."""
        extra = dict(batch.extra)
        for prefix, scorer in self.aux.items():
            lp = ref if scorer is None else scorer.logps(batch)
            assert lp is not None and isinstance(batch, PairBatch)
            chosen, rejected = lp.split()
            names = model_fields(prefix)
            extra[names[0]], extra[names[1]] = chosen.token_logps, rejected.token_logps
        return extra

    # ------------------------------------------------------------------------------------------ updates

    def score(
        self, examples: Sequence[Example], micro: Sequence[Sequence[int]], model: nn.Module | None = None
    ) -> PrecomputedReference:
        """Log-probs of the examples under ``model`` as it is (default: the policy now, adapters included), in
        the micro-batches and layout training uses, so that at the next update the policy's log-ratio against
        it is exactly 0."""
        flat = score_examples(
            model if model is not None else self.model, examples, micro, self.pad_id, self.cfg.train.logprob_chunk,
            self.layout, self.autocast, training_graph=self.compiled, base=False,
        )
        return PrecomputedReference(flat, self.acc.device)

    def _total_weight(self, examples: Sequence[Example], micro: Sequence[Sequence[int]]) -> float:
        local = sum(examples[i].extra.get(WEIGHT, 1.0) for mb in micro for i in mb)
        if self.acc.num_processes > 1:
            t = torch.tensor([float(local)], device=self.acc.device, dtype=torch.float64)
            local = float(self.acc.reduce(t, reduction="sum").item())
        return local

    def accumulate(
        self, examples: Sequence[Example], micro: Sequence[Sequence[int]], reference: Reference
    ) -> Accumulated:
        """Forward and backward over this process's micro-batches; gradients are left in ``.grad``."""
        total = self._total_weight(examples, micro) / self.acc.num_processes
        if total <= 0:
            raise ValueError("an update got examples of total weight 0")
        out = Accumulated({}, torch.zeros((), device=self.acc.device), torch.zeros((), device=self.acc.device))
        self.module.train()
        for k, idx in enumerate(micro):
            batch = self.collate([examples[i] for i in idx], idx, self.pad_id, self.layout).to(self.acc.device)
            sync = nullcontext() if k == len(micro) - 1 else self.acc.no_sync(self.module)
            with sync:
                ref = reference.logps(batch)
                # per-token KL comes from the policy's single forward pass, given the reference's hidden states
                policy = batch_logprobs(self.module, batch, ref if self.loss.needs_token_kl else None)
                stats = self.stats(policy, ref, self._extra_inputs(batch, ref))
                loss_out = self.loss(stats)
                losses = loss_out.losses
                if WEIGHT in batch.extra:
                    losses = losses * batch.extra[WEIGHT].to(losses.dtype)
                self.acc.backward(losses.sum() / total)
            per_example = {"loss": loss_out.losses.detach(), **loss_out.metrics}
            # rows of per-sequence values: (chosen, rejected) for pairs, one row for single responses
            sides = policy.sums.detach().reshape(-1, len(idx))
            logps = dict(zip(self.logp_names, sides, strict=True))
            per_example.update(logps)
            if ref is not None:  # mean log-ratio of the trained responses (a drift measure, not a KL)
                per_example["log_ratio/mean"] = (sides - ref.sums.reshape(-1, len(idx))).mean(0)
            for name, v in per_example.items():
                out.sums[name] = out.sums.get(name, 0) + v.float().sum()
            for name, v in {"loss": loss_out.losses.detach(), **logps}.items():
                out.checked.setdefault(name, []).append(v.reshape(-1))
            out.records.extend(int(i) for i in idx)
            out.tokens += batch.num_tokens  # prompt + response of every sequence, whatever the layout
            out.count += len(idx)
        return out

    def update(
        self,
        examples: Sequence[Example],
        micro: Sequence[Sequence[int]],
        reference: Reference,
        step: int,
        where: Sequence[str] | None = None,
    ) -> dict[str, float]:
        """One optimizer step over ``micro`` (this process's micro-batches of indices into ``examples``).
        Metrics are means over the step's examples on every process. ``step`` (1-based) and ``where`` (a
        description of each example's source record) name a non-finite value: then, before the optimizer
        touches anything, the run stops (``NonFiniteError``) or, with ``train.on_nonfinite=skip``, the update
        is skipped and counted."""
        a = self.accumulate(examples, micro, reference)
        max_norm = self.cfg.optim.max_grad_norm
        grad_norm = self.acc.clip_grad_norm_(self.module.parameters(), max_norm if max_norm else math.inf)
        lr = self.scheduler.get_last_lr()[0]
        checked = {k: torch.cat(v) for k, v in a.checked.items()}
        norm = torch.as_tensor(grad_norm, device=self.acc.device)
        finite = torch.stack([torch.isfinite(v).all() for v in [*checked.values(), norm]])
        names = sorted(a.sums)
        flag = (~finite).any().float()  # stays on the device: no synchronisation until the metrics' own
        packed = torch.stack([a.sums[n] for n in names] + [a.tokens.float(), a.count.float(), flag])
        packed = self.acc.reduce(packed, reduction="sum")  # one collective for metrics and the check
        if packed[-1].item() > 0:  # on any process: every process skips or stops alike
            found = find_nonfinite(step, checked, a.records, grad_norm)
            return self._nonfinite(found, step, where, lr, packed[-3].item())
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        n = packed[-2].item()
        metrics = {name: packed[i].item() / n for i, name in enumerate(names)}
        metrics["tokens"] = packed[-3].item()
        metrics["grad_norm"] = float(grad_norm)
        metrics["lr"] = lr
        if self.cfg.train.on_nonfinite == "skip":
            metrics[SKIPPED] = 0.0
        return metrics

    def _nonfinite(
        self, found: NonFinite | None, step: int, where: Sequence[str] | None, lr: float, tokens: float
    ) -> dict[str, float]:
        """Stop, or skip the update: gradients dropped, no optimizer step; the schedule moves on as if it
        had been taken, so every later update has the learning rate of an uninterrupted run."""
        self.optimizer.zero_grad(set_to_none=True)
        what = found.message(where) if found is not None else f"step {step}: a NaN/inf on another process"
        if self.cfg.train.on_nonfinite == "stop":
            raise NonFiniteError(
                f"{what}. The run stopped before this update: nothing of step {step} was saved, so the newest "
                f"checkpoint in {self.out / 'checkpoints'} is the last good state (--resume continues from it). "
                "Check those records, lower optim.lr, or set train.on_nonfinite=skip to skip such updates"
            )
        self.scheduler.step()
        self.log(f"skipped an update with a non-finite value: {what}")
        return {"tokens": tokens, "lr": lr, SKIPPED: 1.0}

    def snapshot(self) -> dict[str, Any]:
        """The trainable weights, optimizer state and schedule as they are now (``restore`` puts them back
        exactly: an extragradient round's full step starts from the saved point, not the half step's)."""
        return {
            "params": {n: p.detach().clone() for n, p in trainable(self.model).items()},
            "optimizer": copy.deepcopy(self.optimizer.optimizer.state_dict()),
            "scheduler": self.scheduler.state_dict(),
        }

    def restore(self, snap: dict[str, Any]) -> None:
        with torch.no_grad():
            for n, p in trainable(self.model).items():
                p.copy_(snap["params"][n])
        self.optimizer.optimizer.load_state_dict(snap["optimizer"])
        self.scheduler.load_state_dict(snap["scheduler"])
        for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr(), strict=True):
            group["lr"] = lr

    # ----------------------------------------------------------------------------------- state on disk

    def frozen_copy(self, base: bool = False) -> nn.Module:
        """A frozen copy of the policy as it is now (e.g. an anchor that moves every R rounds); with LoRA and
        ``base``, of its base model alone (the initial policy)."""
        model = copy.deepcopy(self.model)
        if base and callable(getattr(model, "unload", None)):
            model = model.unload()
        return model.requires_grad_(False).eval()

    def save(self, step: int, extra: dict[str, torch.Tensor] | None = None) -> None:
        """A checkpoint of step ``step``: weights, optimizer, schedule, RNG, and a source's ``extra`` tensors."""
        if self.acc.is_main_process:
            save_checkpoint(
                self.out, step, self.model, self.optimizer.optimizer, self.scheduler,
                self.cfg.train.keep_checkpoints, extra,
            )
        self.acc.wait_for_everyone()

    def resume(self, ckpt: Path | None) -> tuple[int, dict[str, torch.Tensor]]:
        """Restore checkpoint ``ckpt`` (verified intact: ``checkpoint.latest_checkpoint``); returns (its step,
        the source's extra tensors); (0, {}) if there is none."""
        if ckpt is None:
            self.log(f"--resume: no checkpoint in {self.out}; starting from step 0")
            return 0, {}
        step, extra = load_checkpoint(ckpt, self.model, self.optimizer.optimizer, self.scheduler)
        self.log(f"resumed from {ckpt} (step {step})")
        return step, extra

    def save_final(self, card: dict[str, Any]) -> Path:
        """Save the policy in HF format under ``final/`` (atomically), with ``duelist.json`` (``card`` plus
        the base model). With LoRA the adapters are saved under ``final/adapter`` and then merged into the
        weights in place, so ``final/`` loads with plain transformers; the learner's model is the merged
        model afterwards."""
        final = self.out / "final"
        if self.acc.is_main_process:
            model = self.acc.unwrap_model(self.module).model
            tmp = Path(tempfile.mkdtemp(dir=self.out, prefix=".tmp-final-"))
            if callable(getattr(model, "merge_and_unload", None)):
                model.save_pretrained(tmp / "adapter")
                model = model.merge_and_unload()
            lm = unwrap_causal_lm(model)
            lm.config.use_cache = True
            lm.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            meta = {"base_model": model_source(self.cfg.model), **card}
            (tmp / "duelist.json").write_text(json.dumps(meta, indent=1))
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        self.acc.wait_for_everyone()
        return final
