"""The training loop for offline preference pairs.

records → validated examples → token pairs → (per step) micro-batches → log-probs → loss → update.
The loop knows nothing about particular losses: it asks the loss whether it needs a reference (and of
which kind), which numeric per-pair data fields and which auxiliary frozen models it reads, and hands it
a ``PreferenceStats``.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from duelist.config import Config, ModelConfig, dump_config
from duelist.data.collate import PairBatch, collate_pairs
from duelist.data.formats import validate
from duelist.data.sources import DataError, read_records
from duelist.data.tokenize import PairTokenizer, TokenizedPair
from duelist.losses import LossBase, LossConfigError, PreferenceStats, build_loss, model_fields
from duelist.models.load import load_model, load_tokenizer, model_source
from duelist.models.logprobs import LogProbModel, SequenceLogProbs, batch_logprobs, split_lm, unwrap_causal_lm
from duelist.models.reference import (
    FrozenModel,
    LiveReference,
    PrecomputedReference,
    Reference,
    micro_batch_key,
    precompute,
)
from duelist.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, trainable
from duelist.train.host import default_threads, keep_freed_memory
from duelist.train.logger import RunLogger
from duelist.train.plan import BatchPlan
from duelist.train.schedule import make_scheduler

console = Console(stderr=True)


@dataclass
class TrainResult:
    output_dir: Path
    final_dir: Path | None
    history: list[dict[str, float]]


def prepare_data(
    cfg: Config, tokenizer: Any, fields: dict[str, tuple[float | None, float | None]] | None = None
) -> tuple[list[TokenizedPair], str]:
    """Read, validate and tokenize every record before anything trains; returns pairs and a summary.
    ``fields``: numeric per-pair fields the loss reads (name → bounds), carried to the batches."""
    records = read_records(cfg.data.train, cfg.data.split)
    if cfg.data.limit:
        records = records[: cfg.data.limit]
    checked = validate(records, cfg.data.on_invalid, fields)
    enc = PairTokenizer(tokenizer, cfg.data.max_length, cfg.data.max_prompt_length, cfg.data.truncation)
    pairs, kept, truncated = enc.many(checked.examples)
    if not pairs:
        raise DataError(f"every pair of {cfg.data.train} is longer than data.max_length={cfg.data.max_length}")
    dropped = len(checked.examples) - len(kept)
    summary = checked.summary() + f"; {truncated} truncated, {dropped} dropped (data.truncation={cfg.data.truncation})"
    return pairs, summary


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


def resolve_layout(layout: str, model: torch.nn.Module) -> str:
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


class OfflineTrainer:
    """One training run. ``pairs`` (optional) replaces reading ``cfg.data`` (benchmarks, tests)."""

    def __init__(
        self,
        cfg: Config,
        resume: bool = False,
        overwrite: bool = False,
        pairs: list[TokenizedPair] | None = None,
    ):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.cfg = cfg
        self.out = Path(cfg.train.output_dir)
        # cpu=True is what makes accelerate treat a torchrun launch without GPUs as multi-process (gloo)
        self.acc = Accelerator(cpu=not torch.cuda.is_available())
        if self.acc.device.type == "cpu":
            torch.set_num_threads(cfg.train.threads or default_threads(self.acc.num_processes))
            if cfg.train.keep_freed_memory:
                keep_freed_memory()
        self._check_output_dir(resume, overwrite)
        set_seed(cfg.train.seed)
        self.loss = build_loss(cfg.loss)
        self.ref_mode = reference_mode(cfg, self.loss)

        if pairs is None:
            pairs, data_summary = prepare_data(cfg, load_tokenizer(cfg.model), self.loss.data_fields)
            self.log(f"data: {cfg.data.train}: {data_summary}")
        self.pairs = pairs

        self.model, self.tokenizer = load_model(cfg.model, self.acc.device)
        self.pad_id = self.tokenizer.pad_token_id
        self.layout = resolve_layout(cfg.train.layout, self.model)
        self.autocast = {"no": None, "bf16": torch.bfloat16}[cfg.train.mixed_precision]
        if cfg.train.compile:
            split_lm(self.model)[0].compile(dynamic=True)
        self.plan = BatchPlan(
            len(self.pairs),
            cfg.train.batch_size,
            cfg.train.seed,
            self.acc.num_processes,
            self.acc.process_index,
            cfg.train.grad_accum,
            cfg.data.shuffle,
        )
        self.total = self.plan.total_steps(cfg.train.steps, cfg.train.epochs)
        self.reference = self._make_reference()
        self.aux = self._make_aux_models()

        params = list(trainable(self.model).values())
        o = cfg.optim
        fused = o.fused if o.fused is not None else self.acc.device.type in ("cuda", "cpu")
        self.optimizer = torch.optim.AdamW(
            params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, fused=fused
        )
        self.scheduler = make_scheduler(self.optimizer, self.total, o.warmup, o.schedule)
        self.module, self.optimizer = self.acc.prepare(
            LogProbModel(self.model, cfg.train.logprob_chunk, not cfg.train.logprob_recompute, self.autocast),
            self.optimizer,
        )
        self.start = 0
        if resume:
            ckpt = latest_checkpoint(self.out)
            if ckpt is None:
                self.log(f"--resume: no checkpoint in {self.out}; starting from step 0")
            else:
                self.start = load_checkpoint(ckpt, self.model, self.optimizer.optimizer, self.scheduler)
                self.log(f"resumed from {ckpt} (step {self.start})")

    def log(self, msg: str) -> None:
        if self.acc.is_main_process:
            console.print(msg)

    def _check_output_dir(self, resume: bool, overwrite: bool) -> None:
        busy = self.out.exists() and any(self.out.iterdir())
        if busy and not resume and not overwrite:
            raise FileExistsError(
                f"{self.out} already holds a run; pass --resume to continue it, --overwrite to replace it, "
                "or set train.output_dir"
            )
        if busy and overwrite and not resume and self.acc.is_main_process:
            shutil.rmtree(self.out)
        self.acc.wait_for_everyone()

    def _make_reference(self) -> Reference:
        if self.ref_mode == "none":
            return Reference()
        if self.ref_mode == "live":
            return LiveReference(self.model, self.cfg.train.logprob_chunk, self.autocast)
        micro = [mb for s in range(self.total) for mb in self.plan.micro_batches(s)]
        # a compiled backbone scores the reference with its training graph: exactly the policy's step-1 values
        how = dict(layout=self.layout, autocast=self.autocast, training_graph=self.cfg.train.compile)
        key = micro_batch_key(self.model, model_source(self.cfg.model), self.pairs, micro, **how)
        t0 = time.perf_counter()
        flat = precompute(self.model, self.pairs, micro, self.pad_id, self.cfg.train.logprob_chunk, key, **how)
        self.log(
            f"reference log-probs for {len(flat['index'])} pairs ready in {time.perf_counter() - t0:.1f}s "
            f"(cache key {key})"
        )
        return PrecomputedReference(flat, self.acc.device)

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

    def _extra_inputs(self, batch: PairBatch, ref: SequenceLogProbs | None) -> dict[str, torch.Tensor]:
        """Per-pair data fields of the batch plus each auxiliary model's per-token log-probs."""
        extra = dict(batch.extra)
        for prefix, scorer in self.aux.items():
            lp = ref if scorer is None else scorer.logps(batch)
            assert lp is not None
            chosen, rejected = lp.split()
            names = model_fields(prefix)
            extra[names[0]], extra[names[1]] = chosen.token_logps, rejected.token_logps
        return extra

    def accumulate(self, step: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Forward and backward over this process's micro-batches of ``step``; gradients are left in
        ``.grad`` (scaled so they average over the global batch). Returns per-metric sums and tokens."""
        micro = self.plan.micro_batches(step)
        sums: dict[str, torch.Tensor] = {}
        tokens = torch.zeros((), device=self.acc.device)
        self.module.train()
        for k, idx in enumerate(micro):
            batch = collate_pairs([self.pairs[i] for i in idx], idx, self.pad_id, self.layout).to(self.acc.device)
            sync = nullcontext() if k == len(micro) - 1 else self.acc.no_sync(self.module)
            with sync:
                ref = self.reference.logps(batch)
                # per-token KL comes from the policy's single forward pass, given the reference's hidden states
                policy = batch_logprobs(self.module, batch, ref if self.loss.needs_token_kl else None)
                stats = make_stats(policy, ref, self._extra_inputs(batch, ref))
                out = self.loss(stats)
                self.acc.backward(out.losses.mean() / len(micro))
            per_example = {
                "loss": out.losses.detach(),
                **out.metrics,
                "logps/chosen": stats.policy_chosen_logps.detach(),
                "logps/rejected": stats.policy_rejected_logps.detach(),
            }
            if ref is not None:
                rho_w, rho_l = stats.log_ratios()
                per_example["kl_estimate"] = 0.5 * (rho_w + rho_l).detach()
            for name, v in per_example.items():
                sums[name] = sums.get(name, 0) + v.float().sum()
            tokens += batch.num_tokens  # prompt + response of every sequence, whatever the layout
        return sums, tokens

    def _step(self, step: int) -> dict[str, float]:
        sums, tokens = self.accumulate(step)
        max_norm = self.cfg.optim.max_grad_norm
        grad_norm = self.acc.clip_grad_norm_(self.module.parameters(), max_norm if max_norm else math.inf)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        names = sorted(sums)
        packed = torch.stack([sums[n] for n in names] + [tokens.float()])
        packed = self.acc.reduce(packed, reduction="sum")
        n = self.cfg.train.batch_size
        metrics = {name: packed[i].item() / n for i, name in enumerate(names)}
        metrics["tokens"] = packed[-1].item()
        metrics["grad_norm"] = float(grad_norm)
        metrics["lr"] = lr
        return metrics

    def fit(self) -> TrainResult:
        cfg = self.cfg
        if self.acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(dump_config(cfg))
        logger = (
            RunLogger(self.out, self.total, self.start, cfg.train.progress, cfg.train.tensorboard)
            if self.acc.is_main_process
            else None
        )
        history = []
        t_start = time.perf_counter()
        try:
            for step in range(self.start, self.total):
                t0 = time.perf_counter()
                m = self._step(step)
                m["step_time"] = time.perf_counter() - t0
                m["tokens_per_s"] = m["tokens"] / m["step_time"]
                if not math.isfinite(m["loss"]):
                    raise FloatingPointError(f"step {step + 1}: loss is {m['loss']}; stopping before it spreads")
                history.append({"step": step + 1, **m})
                if logger and ((step + 1) % cfg.train.log_every == 0 or step + 1 == self.total):
                    logger.log(step + 1, m)
                if cfg.train.save_every and (step + 1) % cfg.train.save_every == 0 and step + 1 < self.total:
                    self._save(step + 1)
        finally:
            if logger:
                logger.close()
        self._save(self.total)
        final = self._save_final() if cfg.train.save_final else None
        self.log(f"trained {self.total - self.start} steps in {time.perf_counter() - t_start:.1f}s → {self.out}")
        return TrainResult(self.out, final, history)

    def _save(self, step: int) -> None:
        if self.acc.is_main_process:
            save_checkpoint(
                self.out, step, self.model, self.optimizer.optimizer, self.scheduler, self.cfg.train.keep_checkpoints
            )
        self.acc.wait_for_everyone()

    def _save_final(self) -> Path:
        """Save the policy in HF format under ``final/`` (atomically). With LoRA the adapters are saved
        under ``final/adapter`` and then merged into the weights in place, so ``final/`` loads with plain
        transformers; the trainer's model is the merged model afterwards."""
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
            (tmp / "duelist.json").write_text(
                json.dumps(
                    {"base_model": model_source(self.cfg.model), "loss": self.cfg.loss, "steps": self.total}, indent=1
                )
            )
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        self.acc.wait_for_everyone()
        return final


def train(cfg: Config, resume: bool = False, overwrite: bool = False) -> TrainResult:
    return OfflineTrainer(cfg, resume=resume, overwrite=overwrite).fit()
