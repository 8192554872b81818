"""Sampling completions from a causal LM for evaluation and data generation.

Sampling is pure ancestral sampling at the given temperature (no top-k / top-p), so that at
temperature 1 the samples follow π exactly and log-ratio averages estimate KL(π ‖ π_ref). Each sample
carries its own log-probability, recorded during generation (no second forward pass).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from rich.progress import Progress
from torch import nn


@dataclass(frozen=True)
class Completion:
    prompt_index: int
    prompt_ids: list[int]
    ids: list[int]  # generated tokens, up to and including the first EOS
    text: str  # decoded without special tokens
    finished: bool  # ended with EOS before max_new_tokens
    logprob: float  # log-probability of ``ids`` under the sampling distribution


class _RecordLogProbs:
    """A logits processor that keeps the log-probability of each sampled token.

    At step t it sees the distribution of token t; the token drawn from it shows up as the last column of
    ``input_ids`` at step t + 1, so only one [batch, vocab] distribution is held at a time. Placed last,
    it sees the scores after temperature scaling, i.e. the distribution actually sampled from.
    """

    def __init__(self) -> None:
        self.prev: torch.Tensor | None = None
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self._take(input_ids[:, -1])
        self.prev = scores.float().log_softmax(-1)
        return scores

    def _take(self, tokens: torch.Tensor) -> None:
        if self.prev is not None:
            self.steps.append(self.prev.gather(1, tokens[:, None]).squeeze(1))

    def finish(self, last_tokens: torch.Tensor) -> torch.Tensor:
        self._take(last_tokens)
        return torch.stack(self.steps, 1)


@torch.no_grad()
def sample(
    model: nn.Module,
    tokenizer,
    prompt_ids: Sequence[list[int]],
    n: int = 1,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
    description: str = "sampling",
) -> list[Completion]:
    """``n`` samples for every prompt, in prompt order (prompt 0's n samples first). Deterministic for a
    given seed, batch size and machine."""
    from transformers import GenerationConfig, LogitsProcessorList

    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    gen = GenerationConfig(
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos,
        pad_token_id=pad,
        use_cache=True,
    )
    jobs = [(i, p) for i, p in enumerate(prompt_ids) for _ in range(n)]
    out: list[Completion] = []
    was_training = model.training
    model.eval()
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(description, total=len(jobs))
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            width = max(len(p) for _, p in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            att = torch.zeros_like(ids)
            for r, (_, p) in enumerate(chunk):  # left padding: generation continues at the right edge
                ids[r, width - len(p) :] = torch.tensor(p)
                att[r, width - len(p) :] = 1
            torch.manual_seed(seed + start)
            record = _RecordLogProbs()
            gen_t = model.generate(
                input_ids=ids.to(device),
                attention_mask=att.to(device),
                generation_config=gen,
                logits_processor=LogitsProcessorList([record]),
            )[:, width:]
            token_lp = record.finish(gen_t[:, -1]).cpu()
            for r, ((i, p), g) in enumerate(zip(chunk, gen_t.tolist(), strict=True)):
                finished = eos in g
                g = g[: g.index(eos) + 1] if finished else g
                text = tokenizer.decode(g, skip_special_tokens=True)
                out.append(Completion(i, list(p), g, text, finished, float(token_lp[r, : len(g)].sum())))
            bar.advance(task, len(chunk))
    model.train(was_training)
    return out
