"""Training a reward or preference model on the trainer's core: a source of pairs and a learner, run by the
same step loop (``duelist.train.loop.fit``: checkpoints, resume, progress, JSONL/TensorBoard, accelerate).

A config with a ``reward_model`` section selects it (``duelist train hh-harmless-rm``). The model is the
``model`` backbone (full fine-tuning or LoRA; ``kind.backbones`` copies of it, e.g. CRM's two) and the kind's
head, read at each response's last token (its EOS) and, for kinds that read it, the prompt's last token. Both
come from the forward pass the policy learner uses, in any ``train.layout`` (``shared``: the prompt computed
once per pair): each response gets one extra placeholder token, so that the row's hidden state that
"predicts" it is the one at the response's real last token (the layouts leave a response's final token out of
the rows, since it predicts nothing; the placeholder is that final token, and never enters the model).

The learner never looks at the kind's name: it reads what the kind declares (``reads_user``, ``backbones``,
``refits``, ``has_reward``), calls ``kind.loss(w, l, fields, progress)`` with the head's outputs for the
chosen (w) and rejected (l) responses, and saves the folder of ``duelist.rewards.model``. With
``reward_model.backbone: frozen`` only the head trains, on hidden states computed once per pair at the first
step and cached on disk (``$DUELIST_CACHE/features``, keyed by the weights and the token ids): a probe on fixed
features, seconds per epoch instead of minutes, and free for a second kind trained on the same pairs.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from duelist.config import Config
from duelist.data.collate import TokenBatch, collate_pairs
from duelist.data.tokenize import TokenizedPair
from duelist.models.heads import HeadOutput, fit_normalisation
from duelist.models.load import cache_dir, load_model, model_source
from duelist.models.logprobs import _model_mask, split_lm, unwrap_causal_lm
from duelist.models.reference import Reference, micro_batch_key
from duelist.rewards import USER_FIELD, Kind, build_kind
from duelist.rewards.model import save_reward_model
from duelist.rewards.registry import index_users
from duelist.train.checkpoint import load_checkpoint, save_checkpoint, trainable
from duelist.train.learner import WEIGHT, console, make_optimizer, resolve_layout
from duelist.train.loop import StepWork
from duelist.train.offline import prepare_data
from duelist.train.plan import BatchPlan
from duelist.train.schedule import make_scheduler

HEAD_STATE = "head."  # prefix of the head's buffers (normalisation, MaxMin's groups) in a checkpoint


def with_placeholder(pair: TokenizedPair, token: int) -> TokenizedPair:
    """The pair with one placeholder token after each response (see the module docstring)."""
    return dataclasses.replace(pair, chosen=[*pair.chosen, token], rejected=[*pair.rejected, token])


def read_positions(batch: TokenBatch) -> tuple[Tensor, Tensor]:
    """Flat hidden-state indices (row · width + column) of each sequence's last real token and of its prompt's
    last token, [N] each, in a batch of placeholder-extended responses."""
    n = batch.num_sequences
    last = torch.empty(n, dtype=torch.long, device=batch.source.device)
    prompt = torch.empty_like(last)
    end = batch.pos == batch.lengths[batch.seq] - 1  # the placeholder: predicted by the real last token
    last[batch.seq[end]] = batch.source[end]
    start = batch.pos == 0  # the first response token: predicted by the prompt's last token
    prompt[batch.seq[start]] = batch.source[start]
    return last, prompt


class RewardNet(nn.Module):
    """The kind's backbones (causal LMs, possibly with LoRA; their LM heads unused) and its head. ``forward`` takes
    a token batch of B pairs (or their cached hidden states) and returns the head's outputs for the 2B responses,
    chosen first."""

    def __init__(self, backbones: Sequence[nn.Module], head: nn.Module, autocast: torch.dtype | None = None):
        super().__init__()
        self.models = nn.ModuleList(backbones)
        self.head = head
        self.autocast = autocast

    def hidden(self, batch: dict[str, Tensor | None]) -> tuple[Tensor, Tensor]:
        """Hidden states at each response's last token [2B, M, H] (M backbones) and at its prompt's last token
        (first backbone) [2B, H]."""
        tb = TokenBatch(**batch)  # type: ignore[arg-type]
        last, prompt = read_positions(tb)
        outs, first, done = [], None, {}
        for model in self.models:
            if id(model) in done:  # the same (frozen) backbone in several places: one forward pass
                outs.append(done[id(model)])
                continue
            backbone = split_lm(model)[0]
            with torch.autocast(tb.input_ids.device.type, dtype=self.autocast, enabled=self.autocast is not None):
                h = backbone(
                    input_ids=tb.input_ids,
                    attention_mask=_model_mask(backbone, tb.attention_mask),
                    position_ids=tb.position_ids,
                    use_cache=False,
                ).last_hidden_state.flatten(0, 1)
            outs.append(h[last])
            done[id(model)] = outs[-1]
            first = h[prompt] if first is None else first
        assert first is not None
        return torch.stack(outs, dim=1), first

    def forward(
        self,
        batch: dict[str, Tensor | None] | None = None,
        hidden: Tensor | None = None,
        prompt: Tensor | None = None,
        users: Tensor | None = None,
    ) -> HeadOutput:
        if batch is not None:
            hidden, prompt = self.hidden(batch)
        assert hidden is not None and prompt is not None
        dtype = next(self.head.parameters()).dtype
        h = hidden[:, 0] if hidden.shape[1] == 1 else hidden
        rows = None if users is None else torch.cat([users, users])
        return self.head(h.to(dtype), prompt.to(dtype), rows)


def split_outputs(out: HeadOutput) -> tuple[HeadOutput, HeadOutput]:
    """Head outputs of 2B responses → (chosen rows, rejected rows)."""
    b = next(iter(out.values())).shape[0] // 2
    return {k: v[:b] for k, v in out.items()}, {k: v[b:] for k, v in out.items()}


class RewardSource:
    """The pairs of ``data.train`` for a reward model: validated with the kind's per-pair fields, transformed
    (label flips, reward augmentation), tokenized, placeholder-extended; per-user kinds get each pair's user row
    in place of its user id. One update per step on ``train.batch_size`` pairs of a seeded plan."""

    def __init__(self, cfg: Config, acc: Any, tokenizer: Any, pairs: list[TokenizedPair] | None = None):
        assert cfg.reward_model is not None
        self.cfg, self.acc = cfg, acc
        self.kind: Kind = build_kind(cfg.reward_model.kind, prefix="reward_model.kind")
        conversational = False
        self.where: list[str] | None = None
        if pairs is None:
            pairs, self.where, summary, conversational = prepare_data(cfg, tokenizer, self.kind.data_fields())
            if acc.is_main_process:
                console.print(f"data: {cfg.data.train}: {summary}")
        self.users: list[int] = []
        if self.kind.reads_user:
            self.users, rows = index_users([p.extra[USER_FIELD] for p in pairs])
            pairs = [
                dataclasses.replace(p, extra={**p.extra, USER_FIELD: float(r)})
                for p, r in zip(pairs, rows.tolist(), strict=True)
            ]
        pad = tokenizer.pad_token_id if tokenizer is not None and tokenizer.pad_token_id is not None else 0
        self.pairs = [with_placeholder(p, pad) for p in pairs]
        self.plan = BatchPlan(
            len(pairs), cfg.train.batch_size, cfg.train.seed, acc.num_processes, acc.process_index,
            cfg.train.grad_accum, cfg.data.shuffle,
        )
        self.total_steps = self.total_updates = self.plan.total_steps(cfg.train.steps, cfg.train.epochs)
        fmt = cfg.reward_model.prompt_format
        self.prompt_format = ("chat" if conversational else "text") if fmt == "auto" else fmt
        self.card = {
            "training_data": {
                "train": cfg.data.train, "split": cfg.data.split, "pairs": len(pairs), "limit": cfg.data.limit,
                "flip_rate": cfg.data.flip_rate, "flip_seed": cfg.data.flip_seed, "steps": self.total_steps,
            },
            "users": self.users,
            "prompt_format": self.prompt_format,
        }
        self.reference = Reference()

    def attach(self, learner: RewardLearner) -> None:
        learner.train_pairs = self.pairs  # the normalisation statistics are measured on them

    def _epoch(self, step: int) -> int:
        return step * self.cfg.train.batch_size // len(self.pairs)

    def work(self, step: int, learner: RewardLearner) -> StepWork:
        metrics = {}
        # before each epoch; a resumed run restored the refitted state with its checkpoint
        if self.kind.refits and (step == 0 or self._epoch(step) != self._epoch(step - 1)):
            metrics = learner.refit(self.pairs)
        return StepWork(self.pairs, [self.plan.micro_batches(step)], self.reference, metrics, self.where)

    def finish(self, step: int, learner: RewardLearner) -> dict[str, float]:
        return {}

    def state(self) -> dict[str, Tensor]:
        return {}

    def load_state(self, tensors: dict[str, Tensor], learner: RewardLearner) -> None:
        pass


class RewardLearner:
    """Owns the reward net (backbones + head), its optimizer and schedule; ``update`` takes one optimizer step.
    The same interface as ``duelist.train.learner.Learner`` for the step loop."""

    def __init__(
        self, cfg: Config, acc: Any, kind: Kind, total_updates: int, num_users: int = 0,
        models: Sequence[nn.Module] | None = None, tokenizer: Any = None,
    ):
        assert cfg.reward_model is not None
        self.cfg, self.acc, self.kind = cfg, acc, kind
        self.out = Path(cfg.train.output_dir)
        self.frozen = cfg.reward_model.backbone == "frozen"
        if models is None:
            # frozen copies of one model are one function: a kind with several backbones shares a single one
            loaded = [load_model(cfg.model, acc.device) for _ in range(1 if self.frozen else kind.backbones)]
            models, tokenizer = [m for m, _ in loaded], loaded[0][1]
        models = list(models)
        while len(models) < kind.backbones:  # frozen: the same module again; trained: a copy of its own
            models.append(models[0] if self.frozen else copy.deepcopy(models[0]))
        self.tokenizer, self.pad_id = tokenizer, tokenizer.pad_token_id
        for m in models:
            lm = unwrap_causal_lm(m)
            out_emb, in_emb = lm.get_output_embeddings(), lm.get_input_embeddings()
            if out_emb is not None and out_emb.weight is not in_emb.weight:
                out_emb.requires_grad_(False)  # a reward model reads hidden states only
            if self.frozen:
                m.requires_grad_(False)
        hidden = int(unwrap_causal_lm(models[0]).config.hidden_size)
        dtype = next(models[0].parameters()).dtype
        head = kind.make_head(hidden, num_users).to(device=acc.device, dtype=dtype)
        self.autocast = {"no": None, "bf16": torch.bfloat16}[cfg.train.mixed_precision]
        self.net = RewardNet(models, head, self.autocast)
        self.layout = resolve_layout(cfg.train.layout, models[0])
        self.total_updates = total_updates
        self.optimizer = make_optimizer(list(trainable(self.net).values()), cfg, acc.device)
        self.scheduler = make_scheduler(self.optimizer, total_updates, cfg.optim.warmup, cfg.optim.schedule)
        self.module, self.optimizer = acc.prepare(self.net, self.optimizer)
        self.features: tuple[int, Tensor, Tensor, Tensor] | None = None  # (id of the pairs, chosen, rejected, prompt)
        self.train_pairs: Sequence[TokenizedPair] = []
        self.last_metrics: dict[str, float] = {}

    def log(self, msg: str) -> None:
        if self.acc.is_main_process:
            console.print(msg)

    @property
    def head(self) -> nn.Module:
        return self.net.head

    # ------------------------------------------------------------------------------------------ forward

    def _users(self, pairs: Sequence[TokenizedPair], idx: Sequence[int]) -> Tensor | None:
        if not self.kind.reads_user:
            return None
        return torch.tensor([int(pairs[i].extra[USER_FIELD]) for i in idx], dtype=torch.long, device=self.acc.device)

    def _cached(self, pairs: Sequence[TokenizedPair]) -> tuple[Tensor, Tensor, Tensor]:
        """Hidden states of every pair (frozen backbone): chosen [P, M, H], rejected [P, M, H], prompt [P, H];
        computed once and cached on disk under the weights' fingerprint and the exact token ids."""
        if self.features is None or self.features[0] != id(pairs):
            size = self.cfg.train.batch_size
            batches = [list(range(s, min(s + size, len(pairs)))) for s in range(0, len(pairs), size)]
            key = micro_batch_key(
                self.net.models[0], model_source(self.cfg.model), pairs, batches, self.layout, self.autocast
            )
            path = cache_dir() / "features" / f"{key}.safetensors"  # one backbone's: frozen copies are one module
            if path.is_file():
                flat = load_file(path, device=str(self.acc.device))
            else:
                parts = []
                with torch.no_grad():
                    for idx in batches:
                        batch = collate_pairs([pairs[i] for i in idx], idx, self.pad_id, self.layout)
                        h, x = self.net.hidden(batch.to(self.acc.device).tensors())
                        h = h[:, :1]
                        parts.append((h[: len(idx)], h[len(idx) :], x[: len(idx)]))
                names = ("chosen", "rejected", "prompt")
                flat = {name: torch.cat([p[k] for p in parts]) for k, name in enumerate(names)}
                if self.acc.is_main_process:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(f".tmp{os.getpid()}")
                    save_file({k: v.cpu().contiguous() for k, v in flat.items()}, tmp)
                    os.replace(tmp, path)  # atomic
            m = len(self.net.models)
            chosen, rejected = (flat[k].expand(-1, m, -1) for k in ("chosen", "rejected"))
            self.features = (id(pairs), chosen, rejected, flat["prompt"])
        return self.features[1], self.features[2], self.features[3]

    def outputs(
        self, pairs: Sequence[TokenizedPair], idx: Sequence[int], module: nn.Module | None = None
    ) -> tuple[HeadOutput, HeadOutput, Any]:
        """Head outputs (chosen, rejected) of the pairs ``idx``, and the token batch (None when cached)."""
        module = module or self.net
        users = self._users(pairs, idx)
        if self.frozen:
            hw, hl, hx = self._cached(pairs)
            t = torch.as_tensor(list(idx), dtype=torch.long, device=hw.device)
            out = module(hidden=torch.cat([hw[t], hl[t]]), prompt=torch.cat([hx[t], hx[t]]), users=users)
            return (*split_outputs(out), None)
        batch = collate_pairs([pairs[i] for i in idx], idx, self.pad_id, self.layout).to(self.acc.device)
        out = module(batch=batch.tensors(), users=users)
        return (*split_outputs(out), batch)

    @torch.no_grad()
    def score_all(self, pairs: Sequence[TokenizedPair], limit: int | None = None) -> tuple[HeadOutput, HeadOutput]:
        """Head outputs of (the first ``limit`` of) ``pairs``, in order, without gradients."""
        n = len(pairs) if limit is None else min(limit, len(pairs))
        self.net.eval()
        ws, ls = [], []
        for s in range(0, n, self.cfg.train.batch_size):
            w, l, _ = self.outputs(pairs, range(s, min(s + self.cfg.train.batch_size, n)))
            ws.append(w)
            ls.append(l)
        self.net.train()
        return ({k: torch.cat([o[k] for o in ws]) for k in ws[0]}, {k: torch.cat([o[k] for o in ls]) for k in ls[0]})

    def refit(self, pairs: Sequence[TokenizedPair]) -> dict[str, float]:
        """The kind's between-epoch step over every training pair (MaxMin's E-step)."""
        w, l = self.score_all(pairs)
        return self.kind.refit(self.head, w, l, self._users(pairs, range(len(pairs))))

    # ------------------------------------------------------------------------------------------ updates

    def update(
        self,
        examples: Sequence[TokenizedPair],
        micro: Sequence[Sequence[int]],
        reference: Reference,
        step: int = 0,
        where: Sequence[str] | None = None,
    ) -> dict[str, float]:
        """One optimizer step over this process's micro-batches; the loss is the weighted mean of the kind's
        per-pair losses over the whole step (every process and micro-batch). Metrics are means over its pairs.
        A non-finite loss or gradient stops the run before the update (``step``: 1-based; ``where``: each pair's
        source record, named in the error)."""
        local = sum(examples[i].extra.get(WEIGHT, 1.0) for mb in micro for i in mb)
        total = local
        if self.acc.num_processes > 1:
            t = torch.tensor([float(local)], device=self.acc.device, dtype=torch.float64)
            total = float(self.acc.reduce(t, reduction="sum").item())
        total /= self.acc.num_processes
        progress = self.scheduler.last_epoch / max(self.total_updates, 1)
        sums: dict[str, Tensor] = {}
        tokens = torch.zeros((), device=self.acc.device)
        count = torch.zeros((), device=self.acc.device)
        self.module.train()
        for k, idx in enumerate(micro):
            sync = self.acc.no_sync(self.module) if k < len(micro) - 1 else nullcontext()
            with sync:
                w, l, batch = self.outputs(examples, idx, self.module)
                dtype = w[next(iter(w))].dtype
                fields = {
                    name: torch.tensor([examples[i].extra[name] for i in idx], device=self.acc.device).to(dtype)
                    for name in examples[idx[0]].extra
                }
                out = self.kind.loss(w, l, fields, progress)
                losses = out.losses
                if WEIGHT in fields:
                    losses = losses * fields[WEIGHT]
                self.acc.backward(losses.sum() / total)
            for name, v in {"loss": out.losses.detach(), **out.metrics}.items():
                sums[name] = sums.get(name, 0) + v.float().sum()
            if batch is not None:
                tokens += batch.num_tokens - 2 * len(idx)  # the placeholders are not model input
            count += len(idx)
        max_norm = self.cfg.optim.max_grad_norm
        grad_norm = self.acc.clip_grad_norm_(self.module.parameters(), max_norm if max_norm else math.inf)
        lr = self.scheduler.get_last_lr()[0]
        total_loss = float(sums["loss"])
        if not (math.isfinite(total_loss) and math.isfinite(float(grad_norm))):
            pairs = [i for mb in micro for i in mb]
            named = f" (pairs from {where[pairs[0]]} on)" if where else ""
            raise FloatingPointError(f"step {step}: the loss or the gradient is not finite{named}; stopping before "
                                     "the update")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        names = sorted(sums)
        packed = self.acc.reduce(torch.stack([sums[n] for n in names] + [tokens.float(), count.float()]), "sum")
        n = packed[-1].item()
        metrics = {name: packed[i].item() / n for i, name in enumerate(names)}
        metrics |= {"tokens": packed[-2].item(), "grad_norm": float(grad_norm), "lr": lr}
        self.last_metrics = metrics
        return metrics

    # ----------------------------------------------------------------------------------- state on disk

    def _head_buffers(self) -> dict[str, Tensor]:
        return {HEAD_STATE + k: v for k, v in self.head.named_buffers()}

    def save(self, step: int, extra: dict[str, Tensor] | None = None) -> None:
        """A checkpoint: trainable weights (head included), optimizer, schedule, RNG, and the head's buffers."""
        if self.acc.is_main_process:
            save_checkpoint(
                self.out, step, self.net, self.optimizer.optimizer, self.scheduler, self.cfg.train.keep_checkpoints,
                {**(extra or {}), **self._head_buffers()},
            )
        self.acc.wait_for_everyone()

    def resume(self, ckpt: Path | None) -> tuple[int, dict[str, Tensor]]:
        """Restore checkpoint ``ckpt`` (verified intact by the run); (0, {}) if there is none."""
        if ckpt is None:
            self.log(f"--resume: no checkpoint in {self.out}; starting from step 0")
            return 0, {}
        step, extra = load_checkpoint(ckpt, self.net, self.optimizer.optimizer, self.scheduler)
        buffers = dict(self.head.named_buffers())
        with torch.no_grad():
            for k in list(extra):
                if k.startswith(HEAD_STATE):
                    buffers[k.removeprefix(HEAD_STATE)].copy_(extra.pop(k))
        self.log(f"resumed from {ckpt} (step {step})")
        return step, extra

    def save_final(self, card: dict[str, Any]) -> Path:
        """Store the normalisation statistics (kinds with a reward: raw rewards over the first
        ``reward_model.normalisation_pairs`` training pairs) and save the model folder under ``final/``."""
        assert self.cfg.reward_model is not None
        final = self.out / "final"
        if self.kind.has_reward:
            w, l = self.score_all(self.train_pairs, self.cfg.reward_model.normalisation_pairs)
            fit_normalisation(self.head, torch.cat([w["rewards"], l["rewards"]]))
        if self.acc.is_main_process:
            save_reward_model(
                final,
                kind=self.kind,
                head=self.head,
                backbones=list(self.net.models),
                tokenizer=self.tokenizer,
                base_model=model_source(self.cfg.model),
                training_data=card["training_data"],
                users=card["users"],
                prompt_format=card["prompt_format"],
                max_length=self.cfg.data.max_length,
                max_prompt_length=self.cfg.data.max_prompt_length,
                metrics={"train/" + k: v for k, v in self.last_metrics.items()},
            )
        self.acc.wait_for_everyone()
        return final

