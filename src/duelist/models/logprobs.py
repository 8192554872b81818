"""Stage 5: token batches → log-probs of response tokens.

One forward pass of the backbone serves chosen and rejected. The lm_head and log-softmax then run only
on hidden states that predict response tokens, in chunks of ``chunk_size`` tokens, inside a custom
autograd function that keeps nothing of size [tokens, vocabulary] for the backward pass: it saves the
hidden states and each token's log-normaliser, and recomputes one chunk of logits at a time when
gradients are needed. Peak memory for the head is O(chunk_size × vocabulary), not
O(batch × sequence × vocabulary); the price is one extra head matmul per chunk in the backward pass.

Token-level KL (TDPO): given the reference's final hidden states at the same response positions (from
its own no-grad forward pass), ``ChunkedTokenKL`` computes KL(π_ref(·|x,y_<t) ‖ π_θ(·|x,y_<t)) over the
full vocabulary from the policy's hidden states of the same forward pass, in the same recompute-in-
backward style: no second policy forward, nothing of size [tokens, vocabulary] kept for backward.
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
    token_kl: Tensor | None = None  # [N, T]: KL(π_ref ‖ π_θ) at each response position, 0 elsewhere
    # with keep_hidden: final hidden states at the positions that predict response tokens ([n, H], in
    # row-major order of ``mask``) and the output projection (weight, bias), detached
    hidden: Tensor | None = None
    head: tuple[Tensor, Tensor | None] | None = None

    def split(self) -> tuple[SequenceLogProbs, SequenceLogProbs]:
        """(chosen half, rejected half) of a ``PairBatch``'s rows (hidden states are not split)."""
        b = self.sums.shape[0] // 2
        kl = self.token_kl
        first = SequenceLogProbs(
            self.sums[:b], self.counts[:b], self.token_logps[:b], self.mask[:b], None if kl is None else kl[:b]
        )
        second = SequenceLogProbs(
            self.sums[b:], self.counts[b:], self.token_logps[b:], self.mask[b:], None if kl is None else kl[b:]
        )
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


class ChunkedTokenKL(torch.autograd.Function):
    """KL(softmax(h_ref W_refᵀ + b_ref) ‖ softmax(h Wᵀ + b)) per row, chunked; gradients flow to the policy
    side only (h, W, b) and the backward pass recomputes both chunks of logits.

    KL = Σ_v p_ref,v (log p_ref,v − log p_θ,v), so ∂KL/∂logits_θ = p_θ − p_ref (Σ_v p_ref,v = 1).
    """

    @staticmethod
    def forward(
        ctx,
        h: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        h_ref: Tensor,
        weight_ref: Tensor,
        bias_ref: Tensor | None,
        chunk: int,
    ) -> Tensor:
        out = torch.empty(h.shape[0], dtype=_acc(weight), device=h.device)
        lse = torch.empty_like(out)
        for s in range(0, h.shape[0], chunk):
            logits = _logits(h[s : s + chunk], weight, bias)
            lse[s : s + chunk] = torch.logsumexp(logits, dim=-1)
            # both sides normalised the same way, so identical models give a KL of exactly 0
            ref_logits = _logits(h_ref[s : s + chunk], weight_ref, bias_ref).to(logits.dtype)
            ref_logp = ref_logits - torch.logsumexp(ref_logits, dim=-1, keepdim=True)
            logp = logits - lse[s : s + chunk, None]
            out[s : s + chunk] = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
        ctx.save_for_backward(h, weight, bias, h_ref, weight_ref, bias_ref, lse)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        h, weight, bias, h_ref, weight_ref, bias_ref, lse = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        if any(ctx.needs_input_grad[3:6]):
            raise RuntimeError("ChunkedTokenKL gives no gradient to the reference side; detach it")
        acc = _acc(weight)
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=acc, device=weight.device) if need_b else None
        for s in range(0, h.shape[0], ctx.chunk):
            hc, g = h[s : s + ctx.chunk], grad_out[s : s + ctx.chunk].to(acc)
            p = torch.exp(_logits(hc, weight, bias) - lse[s : s + ctx.chunk, None])
            p_ref = _logits(h_ref[s : s + ctx.chunk], weight_ref, bias_ref).to(acc).softmax(-1)
            d = p.sub_(p_ref).mul_(g[:, None])
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
    ref_hidden: Tensor | None = None,
    ref_weight: Tensor | None = None,
    ref_bias: Tensor | None = None,
    keep_hidden: bool = False,
) -> SequenceLogProbs:
    """Log-probs of the response tokens of every row (no [N, T, V] logits are ever materialised).

    With ``ref_hidden`` (a reference's ``SequenceLogProbs.hidden`` for the same batch) and its head
    ``ref_weight``/``ref_bias``, also the per-token KL(π_ref ‖ π_θ), from the same policy forward pass.
    ``keep_hidden`` returns this model's hidden states and head (detached) for that purpose.
    """
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
    token_kl = None
    if ref_hidden is not None:
        if ref_weight is None or ref_hidden.shape[0] != h.shape[0]:
            raise ValueError(
                f"reference hidden states ({tuple(ref_hidden.shape)}) do not match this batch's "
                f"{h.shape[0]} response positions, or the reference head is missing"
            )
        rb = None if ref_bias is None else ref_bias.detach()
        kl = ChunkedTokenKL.apply(h, head.weight, head.bias, ref_hidden.detach(), ref_weight.detach(), rb, chunk_size)
        token_kl = torch.zeros(input_ids.shape, dtype=kl.dtype, device=kl.device).index_put((rows, cols), kl)
    kept = (h.detach(), (head.weight.detach(), None if head.bias is None else head.bias.detach()))
    return SequenceLogProbs(
        sums,
        response_mask.sum(1).to(lp.dtype),
        token_logps,
        response_mask,
        token_kl,
        kept[0] if keep_hidden else None,
        kept[1] if keep_hidden else None,
    )


class LogProbModel(nn.Module):
    """Wraps a causal LM so that ``forward(batch)`` returns response log-probs.

    Going through this module's ``forward`` (rather than calling the backbone directly) is what lets
    DistributedDataParallel see the computation and synchronise gradients.
    """

    def __init__(self, model: nn.Module, chunk_size: int = 512):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        response_mask: Tensor,
        ref_hidden: Tensor | None = None,
        ref_weight: Tensor | None = None,
        ref_bias: Tensor | None = None,
        keep_hidden: bool = False,
    ) -> SequenceLogProbs:
        return response_logprobs(
            self.model,
            input_ids,
            attention_mask,
            response_mask,
            self.chunk_size,
            ref_hidden,
            ref_weight,
            ref_bias,
            keep_hidden,
        )


def batch_logprobs(
    module: nn.Module,
    batch: PairBatch,
    kl_against: SequenceLogProbs | None = None,
    keep_hidden: bool = False,
) -> SequenceLogProbs:
    """Run a ``LogProbModel`` (possibly wrapped by DDP) on a ``PairBatch``. With ``kl_against`` (a
    reference's output for this batch, computed with ``keep_hidden=True``) also the per-token KL."""
    if kl_against is None:
        return module(batch.input_ids, batch.attention_mask, batch.response_mask, keep_hidden=keep_hidden)
    if kl_against.hidden is None or kl_against.head is None:
        raise ValueError("per-token KL needs the live reference's hidden states (train.reference=live)")
    w, b = kl_against.head
    return module(batch.input_ids, batch.attention_mask, batch.response_mask, kl_against.hidden, w, b, keep_hidden)
