"""Selective gradient checkpointing: which layers recompute, and that gradients do not change."""

import pytest
import torch
from conftest import make_model
from helpers import random_padded_batch as batch

from duelist.config import load_config
from duelist.data.collate import TokenBatch
from duelist.models.load import enable_checkpointing
from duelist.models.logprobs import response_logprobs


def grads_and_mlp_calls(share: float | None) -> tuple[dict[str, torch.Tensor], list[int]]:
    model = make_model(97, seed=5, layers=4).train()
    if share is not None:
        enable_checkpointing(model, share)
    calls = [0] * 4
    for i, layer in enumerate(model.model.layers):  # the MLP starts again when its layer is recomputed
        # (a pre-hook: the recompute stops as soon as the saved tensors it needs exist, before the MLP returns)
        layer.mlp.register_forward_pre_hook(lambda *a, i=i: calls.__setitem__(i, calls[i] + 1))
    ids, att, mask = batch(97)
    response_logprobs(model, TokenBatch.from_padded(ids, att, mask)).sums.sum().backward()
    return {n: p.grad for n, p in model.named_parameters()}, calls


@pytest.mark.parametrize(("share", "recomputed"), [(1.0, [0, 1, 2, 3]), (0.5, [0, 2]), (0.25, [0]), (0.1, [])])
def test_share_of_layers_recomputed_and_gradients_unchanged(share, recomputed):
    plain, calls = grads_and_mlp_calls(None)
    assert calls == [1, 1, 1, 1]
    ckpt, calls = grads_and_mlp_calls(share)
    assert calls == [2 if i in recomputed else 1 for i in range(4)]
    for name, g in plain.items():
        assert torch.allclose(ckpt[name], g, atol=1e-6, rtol=0), name


@pytest.mark.parametrize("value", [0, 1.5, -0.2])
def test_share_outside_unit_interval_is_refused(value):
    with pytest.raises(Exception, match="share of layers"):
        load_config(None, [f"model.gradient_checkpointing={value}"])


def saved_activations(share: float | None) -> int:
    """Elements autograd keeps for the backward pass of one forward."""
    model = make_model(97, seed=5, layers=4).train()
    if share is not None:
        enable_checkpointing(model, share)
    kept = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        kept[0] += t.numel()
        return t

    ids, att, mask = batch(97)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        response_logprobs(model, TokenBatch.from_padded(ids, att, mask))
    return kept[0]


def test_kept_activations_fall_with_the_share_checkpointed():
    none, half, full = saved_activations(None), saved_activations(0.5), saved_activations(1.0)
    assert none > half > full
    # every checkpointed layer stops keeping the same activations: 2 of 4 layers save half of what 4 save
    per_layer = (none - full) / 4
    assert abs((none - half) - 2 * per_layer) <= 0.05 * per_layer
