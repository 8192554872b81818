"""Reference log-probs: precomputed once and cached on disk, computed live, or absent.

* ``precompute``: before training, the reference (the initial weights; with LoRA, the base with adapters
  disabled) scores every pair a process will train on. Results go to
  ``$DUELIST_CACHE/reference/<key>.safetensors`` where the key hashes the model's weights fingerprint and
  the exact token ids, so a change of model, data or tokenization settings gives a new key, and the same
  run started again reads the file instead of recomputing. Memory: no second model copy.
* ``live``: scored per batch under ``no_grad`` — with LoRA by switching the adapters off (no copy), else
  by a frozen copy of the initial model. Needed when a loss reads the reference's token distributions:
  its output keeps the final hidden states at the response positions (``SequenceLogProbs.hidden``) so
  that the policy's forward pass can compute the per-token KL without a second pass.
* ``none``: reference-free losses (e.g. SimPO) skip every reference computation.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import tempfile
from collections.abc import Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from duelist.data.collate import ROW_FORMAT, ExampleBatch, collate_pairs, collate_samples
from duelist.data.tokenize import TokenizedPair, TokenizedSample
from duelist.models.load import cache_dir
from duelist.models.logprobs import LogProbModel, SequenceLogProbs, batch_logprobs, unwrap_causal_lm
from duelist.models.onednn import OneDNNLinear


def model_fingerprint(model: nn.Module, source: str = "") -> str:
    """A cheap, stable hash of the weights: names, shapes, dtypes and a strided sample of each tensor."""
    h = hashlib.sha256(source.encode())
    for name, t in sorted(unwrap_causal_lm(model).state_dict().items()):
        flat = t.detach().reshape(-1)
        step = max(1, flat.numel() // 4096)
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(flat[::step].float().cpu().numpy().tobytes())
    return h.hexdigest()[:20]


def pairs_fingerprint(pairs: Sequence[TokenizedPair], indices: Sequence[int]) -> str:
    h = hashlib.sha256()
    for i in indices:
        p = pairs[i]
        h.update(f"{i}|{p.prompt}|{p.chosen}|{p.rejected};".encode())
    return h.hexdigest()[:20]


@contextlib.contextmanager
def adapters_disabled(model: nn.Module):
    """With PEFT adapters switched off the model *is* the reference; otherwise a no-op."""
    disable = getattr(model, "disable_adapter", None)
    with disable() if callable(disable) else contextlib.nullcontext():
        yield


class Reference:
    """Returns reference log-probs for a batch, or ``None`` when there is no reference."""

    def logps(self, batch: ExampleBatch) -> SequenceLogProbs | None:
        return None


class LiveReference(Reference):
    def __init__(self, model: nn.Module, chunk_size: int, autocast: torch.dtype | None = None):
        self.is_adapter = callable(getattr(model, "disable_adapter", None))
        ref = model if self.is_adapter else copy.deepcopy(model).requires_grad_(False).eval()
        self.module = LogProbModel(ref, chunk_size, autocast=autocast)

    @torch.no_grad()
    def logps(self, batch: ExampleBatch) -> SequenceLogProbs:
        with adapters_disabled(self.module.model):
            return batch_logprobs(self.module, batch, keep_hidden=True)


class FrozenModel(Reference):
    """Scores batches with a separate frozen model under ``no_grad`` (e.g. a loss's token reward model)."""

    def __init__(self, model: nn.Module, chunk_size: int, autocast: torch.dtype | None = None):
        self.module = LogProbModel(model.requires_grad_(False).eval(), chunk_size, autocast=autocast)

    @torch.no_grad()
    def logps(self, batch: ExampleBatch) -> SequenceLogProbs:
        return batch_logprobs(self.module, batch)


class PrecomputedReference(Reference):
    """Per-sequence reference sums and per-token values, computed once, looked up by (example, side)."""

    def __init__(self, flat: dict[str, torch.Tensor], device: torch.device):
        # flat (see ``score_examples``): "values" (all tokens, concatenated), "offsets" [n+1], "sums" [n]
        # (summed as in training, so that at step 1 policy − reference is exactly 0), and "index", "side"
        # [n] naming the example and side (0 chosen / single response, 1 rejected) of each row.
        self.data = {k: v.to(device) for k, v in flat.items()}
        keys = zip(flat["index"].tolist(), flat["side"].tolist(), strict=True)
        self.row = {key: r for r, key in enumerate(keys)}

    def logps(self, batch: ExampleBatch) -> SequenceLogProbs:
        mask = batch.response_mask()
        values, offsets, sums_all = self.data["values"], self.data["offsets"], self.data["sums"]
        token = torch.zeros(mask.shape, dtype=values.dtype, device=mask.device)
        sums = torch.zeros(mask.shape[0], dtype=token.dtype, device=token.device)
        for seq, key in enumerate(batch.sequence_keys()):
            r = self.row[key]
            token[seq, : offsets[r + 1] - offsets[r]] = values[offsets[r] : offsets[r + 1]]
            sums[seq] = sums_all[r]
        return SequenceLogProbs(sums, batch.lengths.to(token.dtype), token, mask)


CACHE_FORMAT = 2  # the layout of a cached reference file (2: one row per sequence, keyed by example and side)


def micro_batch_key(
    model: nn.Module,
    source: str,
    pairs: Sequence[TokenizedPair],
    micro_batches: Sequence[Sequence[int]],
    layout: str = "padded",
    autocast: torch.dtype | None = None,
    training_graph: bool = False,
) -> str:
    """Cache key: weights fingerprint + the exact token ids, batch composition, layout, the rows it builds
    (``ROW_FORMAT``) and how they are scored (mixed precision, training graph, oneDNN linear layers: each
    rounds differently, and a reference scored one way would leave step-1 log-ratios a few 1e-6 off 0 for a
    policy run the other)."""
    h = hashlib.sha256(pairs_fingerprint(pairs, [i for mb in micro_batches for i in mb]).encode())
    onednn = any(isinstance(m, OneDNNLinear) for m in model.modules())
    h.update(f"{[len(mb) for mb in micro_batches]}|{layout}|rows={ROW_FORMAT}|cache={CACHE_FORMAT}|autocast={autocast}"
             f"|training_graph={training_graph}|onednn={onednn}".encode())
    return f"{model_fingerprint(model, source)}-{h.hexdigest()[:20]}"


def precompute(
    model: nn.Module,
    pairs: Sequence[TokenizedPair],
    micro_batches: Sequence[Sequence[int]],
    pad_id: int,
    chunk_size: int,
    key: str,
    layout: str = "padded",
    autocast: torch.dtype | None = None,
    training_graph: bool = False,
) -> dict[str, torch.Tensor]:
    """Score every pair of ``micro_batches`` with the reference, reading/writing the cache under ``key``.

    Pairs are scored in the micro-batches (and layout) training will use, so at step 1 policy and
    reference see identical inputs and their log-ratios are exactly 0. Micro-batches whose pairs were all
    scored already (later epochs) are skipped. ``autocast``: the training's mixed precision, likewise.
    ``training_graph``: score with gradients enabled (nothing is backpropagated), so that a compiled
    backbone runs its training graph, as the policy will. Its inference graph fuses and rounds differently:
    in bf16 mixed precision that moved the speed benchmark's sequence sums by up to 1.09 nats.
    """
    path = cache_dir() / "reference" / f"{key}.safetensors"
    if path.is_file():
        return load_file(path)
    flat = score_examples(model, pairs, micro_batches, pad_id, chunk_size, layout, autocast, training_graph)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    save_file(flat, tmp)
    os.replace(tmp, path)  # atomic: a killed run never leaves a truncated cache entry
    return flat


def score_examples(
    model: nn.Module,
    examples: Sequence[TokenizedPair] | Sequence[TokenizedSample],
    micro_batches: Sequence[Sequence[int]],
    pad_id: int,
    chunk_size: int,
    layout: str = "padded",
    autocast: torch.dtype | None = None,
    training_graph: bool = False,
    base: bool = True,
) -> dict[str, torch.Tensor]:
    """Log-probs of every sequence of the examples in ``micro_batches`` under ``model`` (with LoRA and
    ``base``: the base, adapters off), as flat tensors for ``PrecomputedReference``; examples seen in an
    earlier micro-batch are not scored again. ``training_graph``: see ``precompute``."""
    collate = collate_samples if examples and isinstance(examples[0], TokenizedSample) else collate_pairs
    module = LogProbModel(model, chunk_size, autocast=autocast)
    device = next(model.parameters()).device
    rows: list[torch.Tensor] = []
    sums: list[torch.Tensor] = []
    keys: list[tuple[int, int]] = []
    seen: set[int] = set()
    with torch.set_grad_enabled(training_graph), adapters_disabled(model) if base else contextlib.nullcontext():
        for mb in micro_batches:
            if seen.issuperset(mb):
                continue
            idx = list(mb)
            batch = collate([examples[i] for i in idx], idx, pad_id, layout).to(device)
            lp = batch_logprobs(module, batch)
            # detached at once: with training_graph the autograd graph (a training step's activations) must
            # be gone before the next micro-batch's forward, not when ``lp`` is next assigned
            token, total = lp.token_logps.detach(), lp.sums.detach()
            for r, key in enumerate(batch.sequence_keys()):
                if key[0] not in seen:
                    rows.append(token[r][lp.mask[r]].cpu())
                    sums.append(total[r].cpu())
                    keys.append(key)
            seen.update(idx)
    lengths = torch.tensor([0] + [len(r) for r in rows])
    return {
        "index": torch.tensor([k[0] for k in keys], dtype=torch.long),
        "side": torch.tensor([k[1] for k in keys], dtype=torch.long),
        "values": torch.cat(rows) if rows else torch.zeros(0),
        "offsets": torch.cumsum(lengths, 0),
        "sums": torch.stack(sums) if sums else torch.zeros(0),
    }
