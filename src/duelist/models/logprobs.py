"""Stage 5: token batches → log-probs of response tokens.

One forward pass of the backbone serves chosen and rejected, in any of the layouts of
``duelist.data.collate`` (padded rows, packed rows, or the prompt computed once per pair). The lm_head and
log-softmax then run only on hidden states that predict response tokens, in chunks of ``chunk_size``
tokens, inside a custom autograd function that keeps nothing of size [tokens, vocabulary] for the
backward pass: it saves the hidden states and each token's log-normaliser, and recomputes one chunk of
logits at a time when gradients are needed. Peak memory for the head is O(chunk_size × vocabulary), not
O(batch × sequence × vocabulary); the price is one extra head matmul per chunk in the backward pass
(``keep_probs`` keeps the responses' softmax instead, when memory allows).

Token-level KL (TDPO): given the reference's final hidden states at the same response positions (from
its own no-grad forward pass), ``ChunkedTokenKL`` computes KL(π_ref(·|x,y_<t) ‖ π_θ(·|x,y_<t)) over the
full vocabulary from the policy's hidden states of the same forward pass, in the same recompute-in-
backward style: no second policy forward, nothing of size [tokens, vocabulary] kept for backward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from duelist.data.collate import TokenBatch
from duelist.models.onednn import OneDNNLinear, mm_nt
from duelist.models.onednn import applies as onednn_applies

# the largest softmax kept for the backward pass when ``keep_probs`` is ``None`` (``train.logprob_recompute``'s
# default, as the benchmark's speed point runs): 1 GiB is 5,461 response tokens of a 49,152-token vocabulary in
# float32 (8 pairs of 341-token responses); beyond it the head recomputes its chunks
KEEP_PROBS_BYTES = 2**30


@dataclass
class SequenceLogProbs:
    sums: Tensor  # [N] (float32, or float64 for a float64 model): Σ_t log π(y_t | y_<t) over response tokens
    counts: Tensor  # [N]: number of response tokens
    token_logps: Tensor  # [N, R], response-aligned: [i, k] is the k-th token of response i; 0 past its end
    mask: Tensor  # [N, R] bool: k < length of response i
    token_kl: Tensor | None = None  # [N, R]: KL(π_ref ‖ π_θ) at each response position, 0 elsewhere
    # with keep_hidden: final hidden states that predict the response tokens ([M, H], in the batch's target
    # order, which is the same for every model scoring the same batch) and the output projection, detached
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
    """log softmax(h Wᵀ + b)[y] for rows of ``h``, chunked. The backward pass recomputes each chunk of
    logits, or with ``keep`` reuses the softmax saved by the forward pass ([rows, vocabulary] kept: one head
    matmul and one exp fewer per chunk, for when memory allows). ``onednn``: float32 products on CPU by
    oneDNN, as the head layer's own (``duelist.models.onednn``)."""

    @staticmethod
    def forward(
        ctx,
        h: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        target: Tensor,
        chunk: int,
        keep: bool = False,
        onednn: bool = False,
    ) -> Tensor:
        ctx.compute, ctx.onednn = _compute_dtype(weight), onednn
        acc = _acc(weight)
        out = torch.empty(h.shape[0], dtype=acc, device=h.device)
        lse = torch.empty_like(out)
        keep = keep and any(ctx.needs_input_grad[:3])
        hc, wc, bc = _cast(ctx.compute, h, weight, bias)
        with _no_autocast(h):
            # with keep, one chunk: each head matmul is one large GEMM, and its logits, normalised in place,
            # are the kept softmax (no chunk-sized temporaries, one pass fewer than logsumexp + exp)
            probs = _logits(hc, wc, bc, onednn) if keep else h.new_empty(0, weight.shape[0], dtype=acc)
            chunk = max(1, h.shape[0]) if keep else chunk
            for s in range(0, h.shape[0], chunk):
                rows = slice(s, s + chunk)
                logits = probs[rows] if keep else _logits(hc[rows], wc, bc, onednn)
                out[rows] = logits.gather(1, target[rows, None]).squeeze(1)
                lse[rows] = _log_normaliser_(logits, normalise=keep)
                out[rows] -= lse[rows]
        ctx.save_for_backward(h, weight, bias, target, lse, probs)
        ctx.chunk, ctx.keep, ctx.consumed = chunk, keep, False
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        if ctx.keep:
            if ctx.consumed:
                raise RuntimeError("keep_probs: the kept softmax is consumed by the first backward pass; "
                                   "backpropagate through this graph once, or use logprob_recompute=true")
            ctx.consumed = True  # the softmax is overwritten below: no [rows, vocabulary] temporaries
        h, weight, bias, target, lse, probs = ctx.saved_tensors
        hc, wc, bc = _cast(ctx.compute, h, weight, bias)

        def d_logits(s: slice, g: Tensor) -> Tensor:
            # d log p_y / d logits = onehot(y) − softmax, scaled by the incoming gradient of each row
            if ctx.keep:
                d = probs[s].mul_(-g[:, None])
            else:
                d = torch.exp(_logits(hc[s], wc, bc, ctx.onednn).sub_(lse[s, None])).mul_(-g[:, None])
            return d.scatter_add_(1, target[s, None], g[:, None])

        return (*_head_backward(ctx, h, weight, bias, grad_out, d_logits, hc, wc), None, None, None, None)


def _log_normaliser_(logits: Tensor, normalise: bool) -> Tensor:
    """logsumexp of each row of ``logits`` [rows, V], which it overwrites: with their softmax if
    ``normalise``, else with scratch values."""
    m = logits.amax(-1, keepdim=True)
    total = logits.sub_(m).exp_().sum(-1, keepdim=True)
    if normalise:
        logits.div_(total)
    return (m + total.log()).squeeze(1)


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
        ctx.compute, ctx.onednn = _compute_dtype(weight), False  # its products stay with ATen
        out = torch.empty(h.shape[0], dtype=_acc(weight), device=h.device)
        lse = torch.empty_like(out)
        hc, wc, bc = _cast(ctx.compute, h, weight, bias)
        hr, wr, br = _cast(ctx.compute, h_ref, weight_ref, bias_ref)
        with _no_autocast(h):
            for s in range(0, h.shape[0], chunk):
                logits = _logits(hc[s : s + chunk], wc, bc)
                lse[s : s + chunk] = torch.logsumexp(logits, dim=-1)
                # both sides normalised the same way, so identical models give a KL of exactly 0
                ref_logits = _logits(hr[s : s + chunk], wr, br).to(logits.dtype)
                ref_logp = ref_logits - torch.logsumexp(ref_logits, dim=-1, keepdim=True)
                logp = logits - lse[s : s + chunk, None]
                out[s : s + chunk] = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
        ctx.save_for_backward(h, weight, bias, h_ref, weight_ref, bias_ref, lse)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        h, weight, bias, h_ref, weight_ref, bias_ref, lse = ctx.saved_tensors
        if any(ctx.needs_input_grad[3:6]):
            raise RuntimeError("ChunkedTokenKL gives no gradient to the reference side; detach it")

        hc, wc, bc = _cast(ctx.compute, h, weight, bias)
        hr, wr, br = _cast(ctx.compute, h_ref, weight_ref, bias_ref)

        def d_logits(s: slice, g: Tensor) -> Tensor:
            logits = _logits(hc[s], wc, bc)
            p_ref = _logits(hr[s], wr, br).to(logits.dtype).softmax(-1)
            return torch.exp(logits.sub_(lse[s, None])).sub_(p_ref).mul_(g[:, None])

        return (*_head_backward(ctx, h, weight, bias, grad_out, d_logits, hc, wc), None, None, None, None)


def _head_backward(
    ctx, h: Tensor, weight: Tensor, bias: Tensor | None, grad_out: Tensor, d_logits, hc: Tensor, wc: Tensor
) -> tuple:
    """Gradients of a per-row function of ``h Wᵀ + b`` w.r.t. (h, W, b), one chunk of rows at a time;
    ``d_logits(rows, grad_rows)`` gives the gradient w.r.t. that chunk's logits. ``hc``, ``wc``: h and W in
    the forward's compute dtype (autocast's, under mixed precision), for the matmuls; sums in ``_acc``."""
    need_h, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
    acc = _acc(weight)
    grad_h = torch.empty_like(h) if need_h else None
    grad_w = grad_b = None
    for start in range(0, h.shape[0], ctx.chunk):
        s = slice(start, start + ctx.chunk)
        d = d_logits(s, grad_out[s].to(acc))
        dc = d.to(ctx.compute)
        if need_h:  # d W = d (Wᵀ)ᵀ
            grad_h[s] = _mm_nt(dc, wc.t(), ctx.onednn).to(h.dtype)
        if need_w:  # the first chunk allocates: no zero-filled [vocabulary, hidden] buffer to add into
            if dc.dtype == acc:
                grad_w = d.t() @ hc[s] if grad_w is None else grad_w.addmm_(d.t(), hc[s])
            else:
                part = (dc.t() @ hc[s]).to(acc)
                grad_w = part if grad_w is None else grad_w.add_(part)
        if need_b:
            grad_b = d.sum(0) if grad_b is None else grad_b.add_(d.sum(0))
    if h.shape[0] == 0:  # no response tokens: zero gradients
        grad_w = torch.zeros_like(weight) if need_w else None
        grad_b = torch.zeros_like(bias) if need_b else None
    return (
        grad_h,
        grad_w.to(weight.dtype) if grad_w is not None else None,
        grad_b.to(bias.dtype) if grad_b is not None else None,
    )


def _acc(weight: Tensor) -> torch.dtype:
    """Accumulation dtype: at least float32 (bf16/fp16 models), float64 for float64 models."""
    return torch.promote_types(weight.dtype, torch.float32)


def _compute_dtype(weight: Tensor) -> torch.dtype:
    """The head's matmul dtype: autocast's when it is on for this device (as ``nn.Linear`` would run),
    else the weight's. Recorded in the forward pass, because the backward pass runs outside autocast."""
    device = weight.device.type
    if torch.is_autocast_enabled(device) and weight.dtype.is_floating_point and weight.dtype != torch.float64:
        return torch.get_autocast_dtype(device)
    return weight.dtype


def _cast(dtype: torch.dtype, h: Tensor, weight: Tensor, bias: Tensor | None) -> tuple:
    return h.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype)


def _no_autocast(t: Tensor):
    """The head casts explicitly (``_compute_dtype``); autocast must not recast its in-place, ``out=`` ops."""
    return torch.autocast(t.device.type, enabled=False)


def _mm_nt(a: Tensor, b: Tensor, onednn: bool) -> Tensor:
    """a bᵀ; by oneDNN where ``onednn`` and float32 on CPU."""
    return mm_nt(a, b) if onednn and onednn_applies(a, b) else a @ b.t()


def _logits(h: Tensor, weight: Tensor, bias: Tensor | None, onednn: bool = False) -> Tensor:
    """h Wᵀ + b, returned in the accumulation dtype."""
    logits = _mm_nt(h, weight, onednn)
    if bias is not None:
        logits += bias
    return logits.to(_acc(weight))


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


def _model_mask(backbone: nn.Module, mask: Tensor | None) -> Tensor | None:
    """A 4-D boolean layout mask becomes the additive mask attention implementations expect."""
    if mask is None or mask.dim() != 4:
        return mask
    dtype = next(backbone.parameters()).dtype
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)


def response_logprobs(
    model: nn.Module,
    batch: TokenBatch,
    chunk_size: int = 512,
    ref_hidden: Tensor | None = None,
    ref_weight: Tensor | None = None,
    ref_bias: Tensor | None = None,
    keep_hidden: bool = False,
    keep_probs: bool | None = False,
) -> SequenceLogProbs:
    """Log-probs of every response token of ``batch`` (no [N, T, V] logits are ever materialised).

    Per-token arrays are response-aligned: ``token_logps[i, k]`` is the k-th token of response i.
    With ``ref_hidden`` (a reference's ``SequenceLogProbs.hidden`` for the same batch) and its head
    ``ref_weight``/``ref_bias``, also the per-token KL(π_ref ‖ π_θ), from the same policy forward pass.
    ``keep_hidden`` returns this model's hidden states and head (detached) for that purpose.
    ``keep_probs`` keeps the response tokens' softmax for the backward pass instead of recomputing it;
    ``None``: when it takes at most ``KEEP_PROBS_BYTES``.
    """
    backbone, head = split_lm(model)
    hidden = backbone(
        input_ids=batch.input_ids,
        attention_mask=_model_mask(backbone, batch.attention_mask),
        position_ids=batch.position_ids,
        use_cache=False,
    ).last_hidden_state
    h = hidden.flatten(0, 1)[batch.source]
    if keep_probs is None:
        keep_probs = h.shape[0] * head.weight.shape[0] * _acc(head.weight).itemsize <= KEEP_PROBS_BYTES
    lp = ChunkedTargetLogProb.apply(
        h, head.weight, head.bias, batch.target, chunk_size, keep_probs, isinstance(head, OneDNNLinear)
    )
    mask = batch.response_mask()
    index = (batch.seq, batch.pos)
    token_logps = torch.zeros(mask.shape, dtype=lp.dtype, device=lp.device).index_put(index, lp)
    sums = torch.zeros(mask.shape[0], dtype=lp.dtype, device=lp.device).index_add(0, batch.seq, lp)
    token_kl = None
    if ref_hidden is not None:
        if ref_weight is None or ref_hidden.shape[0] != h.shape[0]:
            raise ValueError(
                f"reference hidden states ({tuple(ref_hidden.shape)}) do not match this batch's "
                f"{h.shape[0]} response positions, or the reference head is missing"
            )
        rb = None if ref_bias is None else ref_bias.detach()
        kl = ChunkedTokenKL.apply(h, head.weight, head.bias, ref_hidden.detach(), ref_weight.detach(), rb, chunk_size)
        token_kl = torch.zeros(mask.shape, dtype=kl.dtype, device=kl.device).index_put(index, kl)
    kept = (h.detach(), (head.weight.detach(), None if head.bias is None else head.bias.detach()))
    return SequenceLogProbs(
        sums,
        batch.lengths.to(lp.dtype),
        token_logps,
        mask,
        token_kl,
        kept[0] if keep_hidden else None,
        kept[1] if keep_hidden else None,
    )


class LogProbModel(nn.Module):
    """Wraps a causal LM so that ``forward(batch)`` returns response log-probs.

    Going through this module's ``forward`` (rather than calling the backbone directly) is what lets
    DistributedDataParallel see the computation and synchronise gradients.
    """

    def __init__(
        self,
        model: nn.Module,
        chunk_size: int = 512,
        keep_probs: bool | None = False,
        autocast: torch.dtype | None = None,
    ):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size
        self.keep_probs = keep_probs
        self.autocast = autocast  # mixed precision: matmuls in this dtype, weights and sums as they are

    def forward(
        self,
        batch: dict[str, Tensor | None],
        ref_hidden: Tensor | None = None,
        ref_weight: Tensor | None = None,
        ref_bias: Tensor | None = None,
        keep_hidden: bool = False,
    ) -> SequenceLogProbs:
        tb = TokenBatch(**batch)  # type: ignore[arg-type]
        device = tb.input_ids.device.type
        with torch.autocast(device, dtype=self.autocast, enabled=self.autocast is not None):
            return response_logprobs(
                self.model, tb, self.chunk_size, ref_hidden, ref_weight, ref_bias, keep_hidden, self.keep_probs
            )


def batch_logprobs(
    module: nn.Module,
    batch: TokenBatch,
    kl_against: SequenceLogProbs | None = None,
    keep_hidden: bool = False,
) -> SequenceLogProbs:
    """Run a ``LogProbModel`` (possibly wrapped by DDP) on a batch. With ``kl_against`` (a reference's
    output for this batch, computed with ``keep_hidden=True``) also the per-token KL."""
    if kl_against is None:
        return module(batch.tensors(), keep_hidden=keep_hidden)
    if kl_against.hidden is None or kl_against.head is None:
        raise ValueError("per-token KL needs the live reference's hidden states (train.reference=live)")
    w, b = kl_against.head
    return module(batch.tensors(), kl_against.hidden, w, b, keep_hidden)


@torch.no_grad()
def sequence_logprobs(
    model: nn.Module,
    prompts: list[list[int]],
    responses: list[list[int]],
    pad_id: int,
    batch_size: int = 32,
    chunk_size: int = 512,
) -> Tensor:
    """log π(response_i | prompt_i) for every i, scored ``batch_size`` sequences at a time ([N], float64)."""
    from duelist.data.collate import collate_sequences

    device = next(model.parameters()).device
    out = []
    for s in range(0, len(prompts), batch_size):
        tb = collate_sequences(prompts[s : s + batch_size], responses[s : s + batch_size], pad_id).to(device)
        out.append(response_logprobs(model, tb, chunk_size).sums.double().cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
