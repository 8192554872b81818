"""Stage 5: token batches → log-probs of response tokens.

One forward pass of the backbone serves chosen and rejected. The lm_head and log-softmax then run only
on hidden states that predict response tokens, in chunks of ``chunk_size`` tokens, inside a custom
autograd function that keeps nothing of size [tokens, vocabulary] for the backward pass: it saves the
hidden states and each token's log-normaliser, and recomputes one chunk of logits at a time when
gradients are needed. Peak memory for the head is O(chunk_size × vocabulary), not
O(batch × sequence × vocabulary); the price is one extra head matmul per chunk in the backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from duelist.data.collate import PairBatch


@dataclass
class SequenceLogProbs:
    sums: Tensor  # [N] (float32, or float64 for a float64 model): Σ_t log π(y_t | y_<t) over response tokens
    counts: Tensor  # [N]: number of response tokens
    token_logps: Tensor  # [N, T], aligned with input_ids; 0 outside the response
    mask: Tensor  # [N, T] bool: response tokens

    def split(self) -> tuple[SequenceLogProbs, SequenceLogProbs]:
        """(chosen half, rejected half) of a ``PairBatch``'s rows."""
        b = self.sums.shape[0] // 2
        first = SequenceLogProbs(self.sums[:b], self.counts[:b], self.token_logps[:b], self.mask[:b])
        second = SequenceLogProbs(self.sums[b:], self.counts[b:], self.token_logps[b:], self.mask[b:])
        return first, second


class ChunkedTargetLogProb(torch.autograd.Function):
    """log softmax(h Wᵀ + b)[y] for rows of ``h``, chunked; the backward pass recomputes logits."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor, chunk: int) -> Tensor:
        out = torch.empty(h.shape[0], dtype=_acc(weight), device=h.device)
        lse = torch.empty_like(out)
        for s in range(0, h.shape[0], chunk):
            logits = _logits(h[s : s + chunk], weight, bias)
            lse[s : s + chunk] = torch.logsumexp(logits, dim=-1)
            out[s : s + chunk] = logits.gather(1, target[s : s + chunk, None]).squeeze(1) - lse[s : s + chunk]
        ctx.save_for_backward(h, weight, bias, target, lse)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        h, weight, bias, target, lse = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        grad_h = torch.empty_like(h) if need_h else None
        acc = _acc(weight)
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=acc, device=weight.device) if need_b else None
        for s in range(0, h.shape[0], ctx.chunk):
            hc, g = h[s : s + ctx.chunk], grad_out[s : s + ctx.chunk].to(acc)
            # d log p_y / d logits = onehot(y) − softmax; scaled by the incoming gradient per row
            d = torch.exp(_logits(hc, weight, bias) - lse[s : s + ctx.chunk, None]).mul_(-g[:, None])
            d.scatter_add_(1, target[s : s + ctx.chunk, None], g[:, None])
            if need_h:
                grad_h[s : s + ctx.chunk] = (d.to(weight.dtype) @ weight).to(h.dtype)
            if need_w:
                grad_w.addmm_(d.t(), hc.to(acc))
            if need_b:
                grad_b += d.sum(0)
        return (
            grad_h,
            grad_w.to(weight.dtype) if need_w else None,
            grad_b.to(bias.dtype) if need_b else None,
            None,
            None,
        )


def _acc(weight: Tensor) -> torch.dtype:
    """Accumulation dtype: at least float32 (bf16/fp16 models), float64 for float64 models."""
    return torch.promote_types(weight.dtype, torch.float32)


def _logits(h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    out = h @ weight.t()
    if bias is not None:
        out = out + bias
    return out.to(_acc(weight))


def unwrap_causal_lm(model: nn.Module) -> nn.Module:
    """The HF causal LM inside a PEFT wrapper (adapters stay injected in its layers)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def split_lm(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """(backbone returning hidden states, output projection) of an HF causal LM."""
    lm = unwrap_causal_lm(model)
    head = lm.get_output_embeddings()
    backbone = getattr(lm, lm.base_model_prefix, None)
    if head is None or backbone is None:
        raise TypeError(f"{type(lm).__name__} is not a causal LM with an output projection")
    return backbone, head


def response_logprobs(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    response_mask: Tensor,
    chunk_size: int = 512,
) -> SequenceLogProbs:
    """Log-probs of the response tokens of every row (no [N, T, V] logits are ever materialised)."""
    backbone, head = split_lm(model)
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    rows, cols = response_mask.nonzero(as_tuple=True)
    if bool((cols == 0).any()):
        raise ValueError("a response token at position 0 has no context; every row needs a prompt token")
    h = hidden[rows, cols - 1]
    lp = ChunkedTargetLogProb.apply(h, head.weight, head.bias, input_ids[rows, cols], chunk_size)
    n = input_ids.shape[0]
    token_logps = torch.zeros(input_ids.shape, dtype=lp.dtype, device=lp.device).index_put((rows, cols), lp)
    sums = torch.zeros(n, dtype=lp.dtype, device=lp.device).index_add(0, rows, lp)
    return SequenceLogProbs(sums, response_mask.sum(1).to(lp.dtype), token_logps, response_mask)


class LogProbModel(nn.Module):
    """Wraps a causal LM so that ``forward(batch)`` returns response log-probs.

    Going through this module's ``forward`` (rather than calling the backbone directly) is what lets
    DistributedDataParallel see the computation and synchronise gradients.
    """

    def __init__(self, model: nn.Module, chunk_size: int = 512):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size

    def forward(self, input_ids: Tensor, attention_mask: Tensor, response_mask: Tensor) -> SequenceLogProbs:
        return response_logprobs(self.model, input_ids, attention_mask, response_mask, self.chunk_size)


def batch_logprobs(module: nn.Module, batch: PairBatch) -> SequenceLogProbs:
    """Run a ``LogProbModel`` (possibly wrapped by DDP) on a ``PairBatch``."""
    return module(batch.input_ids, batch.attention_mask, batch.response_mask)
