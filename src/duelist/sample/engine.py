"""Batched ancestral sampling with a KV cache, for online rounds: K responses per prompt.

Each prompt is prefilled once; its cache is then repeated for its K samples (``batch_repeat_interleave``),
so the prompt costs one forward pass whatever K is. Decoding runs one token per step for every unfinished
sample, with the head computed only for the last position.

The sampling distribution at each step is ``softmax(z / temperature)`` where ``z`` is one model's logits
or, for several models with weights ``w_k``, the token-level geometric mixture ``z = Σ_k w_k
log_softmax(z_k)`` (Nash-MD's opponent: ``log ν ∝ (1−β) log π + β log μ``, renormalised at every token,
each model with its own cache). Every sample carries the log-probability of its tokens under that
distribution, recorded while sampling: at temperature 1 with one model it is ``log π(y|x)``. With ``record``
(another set of mixture weights over the same models) each sample also carries its log-probability under that
mixture, at no extra forward pass (Nash-MD: a policy sample's log-probability under the opponent ν).

Deterministic for a given seed, chunking and machine: the generator is seeded per chunk of prompts.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Sample:
    """One sampled response."""

    prompt_index: int
    ids: list[int]  # generated tokens, up to and including the first EOS
    logprob: float  # Σ_t log q(y_t | x, y_<t) under the sampling distribution q
    finished: bool  # ended with EOS before the token limit
    recorded: float | None = None  # Σ_t log r(y_t | ·) under the ``record`` mixture r, if asked for


def _cache_kwarg(model: nn.Module) -> str:
    """transformers ≥ 5.2x calls the KV cache ``cache``; earlier releases ``past_key_values``."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class _Stream:
    """One model's KV cache over the rows being sampled."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.key = _cache_kwarg(model)
        self.cache = None

    def __call__(self, ids: Tensor, mask: Tensor, positions: Tensor) -> Tensor:
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self.key: self.cache},
        )
        self.cache = getattr(out, self.key, None) or out.past_key_values
        return out.logits[:, -1].float()

    def repeat(self, k: int) -> None:
        if k > 1:
            self.cache.batch_repeat_interleave(k)


def _next_logprobs(logits: Sequence[Tensor], weights: Sequence[float], temperature: float) -> Tensor:
    """log q(·) of the sampling distribution from each model's next-token logits."""
    if len(logits) == 1:
        z = logits[0]
    else:
        z = sum(w * torch.log_softmax(l, -1) for w, l in zip(weights, logits, strict=True))
    return torch.log_softmax(z / temperature, -1)


@torch.no_grad()
def generate(
    models: nn.Module | Sequence[nn.Module],
    prompt_ids: Sequence[Sequence[int]],
    k: int,
    *,
    max_new_tokens: int,
    eos_id: int | None,
    pad_id: int,
    temperature: float = 1.0,
    weights: Sequence[float] | None = None,
    seed: int = 0,
    prompts_per_chunk: int = 16,
    record: Sequence[float] | None = None,
) -> list[list[Sample]]:
    """``k`` samples for each prompt (a list of ``k`` per prompt, in prompt order).

    ``models``: one model, or several sampled as the geometric mixture with ``weights`` (summing to 1).
    ``record``: mixture weights under which each sample's log-probability is also recorded (``recorded``).
    ``prompts_per_chunk`` prompts (so ``prompts_per_chunk · k`` rows) are decoded together.
    """
    models = [models] if isinstance(models, nn.Module) else list(models)
    weights = [1.0] if weights is None and len(models) == 1 else list(weights or [])
    for w in (weights, record):
        if w is not None and (len(w) != len(models) or abs(sum(w) - 1) > 1e-9 or min(w) < 0):
            raise ValueError(f"mixture weights {list(w)} must be one per model, non-negative, summing to 1")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (got {temperature})")
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("every prompt needs at least one token")
    device = next(models[0].parameters()).device
    states = [(m, m.training) for m in models]
    for m in models:
        m.eval()
    out: list[list[Sample]] = []
    try:
        for start in range(0, len(prompt_ids), prompts_per_chunk):
            chunk = prompt_ids[start : start + prompts_per_chunk]
            gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + start)
            out += _generate_chunk(models, weights, record, chunk, start, k, max_new_tokens, eos_id, pad_id,
                                   temperature, gen, device)
    finally:
        for m, was_training in states:
            m.train(was_training)
    return out


def _generate_chunk(
    models: list[nn.Module],
    weights: list[float],
    record: Sequence[float] | None,
    prompts: Sequence[Sequence[int]],
    first_index: int,
    k: int,
    max_new_tokens: int,
    eos_id: int | None,
    pad_id: int,
    temperature: float,
    gen: torch.Generator,
    device: torch.device,
) -> list[list[Sample]]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, p in enumerate(prompts):  # left padding: every row's next token goes in the same column
        ids[r, width - len(p) :] = torch.tensor(list(p))
        mask[r, width - len(p) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    streams = [_Stream(m) for m in models]
    logits = [s(ids, mask, positions) for s in streams]
    for s in streams:
        s.repeat(k)
    logits = [l.repeat_interleave(k, 0) for l in logits]
    mask = mask.repeat_interleave(k, 0)
    pos = positions[:, -1:].repeat_interleave(k, 0)
    rows = len(prompts) * k
    tokens = torch.full((rows, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logq = torch.zeros(rows, dtype=torch.float64, device=device)
    logr = torch.zeros(rows, dtype=torch.float64, device=device)
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    lengths = torch.full((rows,), max_new_tokens, dtype=torch.long, device=device)
    for t in range(max_new_tokens):
        lq = _next_logprobs(logits, weights, temperature)
        tok = torch.multinomial(lq.exp(), 1, generator=gen).squeeze(1)
        tok = torch.where(done, torch.full_like(tok, pad_id), tok)
        logq += torch.where(done, 0.0, lq.gather(1, tok[:, None]).squeeze(1).double())
        if record is not None:
            lr = _next_logprobs(logits, record, temperature)
            logr += torch.where(done, 0.0, lr.gather(1, tok[:, None]).squeeze(1).double())
        tokens[:, t] = tok
        if eos_id is not None:
            ended = (tok == eos_id) & ~done
            lengths = torch.where(ended, t + 1, lengths)
            done |= ended
        if bool(done.all()) or t + 1 == max_new_tokens:
            break
        mask = torch.cat([mask, (~done).long()[:, None]], 1)
        pos = pos + 1
        logits = [s(tok[:, None], mask, pos) for s in streams]
    out: list[list[Sample]] = []
    for p in range(len(prompts)):
        group = []
        for r in range(p * k, (p + 1) * k):
            n = int(lengths[r])
            rec = float(logr[r]) if record is not None else None
            group.append(Sample(first_index + p, tokens[r, :n].tolist(), float(logq[r]), bool(done[r]), rec))
        out.append(group)
    return out
