"""float32 linear layers through oneDNN (``model.onednn_linear``): the same products and gradients as
``nn.Linear`` to float32 rounding, eager and compiled, and training that follows the ATen (MKL) run."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import standard_rows, write_jsonl
from helpers import tiny_config
from torch import nn

from duelist.config import ModelConfig
from duelist.models.load import load_model
from duelist.models.onednn import OneDNNLinear, available, mm_nt, on_by_default, use_onednn_linear
from duelist.train.run import train

pytestmark = pytest.mark.skipif(not available(), reason="PyTorch without oneDNN")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.mark.parametrize("transposed", [False, True])
def test_mm_nt_and_its_gradients_are_the_float64_products(transposed):
    """y = a bᵀ; ∂L/∂a = g b and ∂L/∂b = gᵀ a, checked against float64 products (float32 rounding of
    sums over 96 terms: ~1e-7 relative; a wrong transpose or a missing term gives O(1))."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(37, 96, generator=g, requires_grad=True)
    b0 = torch.randn(96, 53, generator=g) if transposed else torch.randn(53, 96, generator=g)
    b0.requires_grad_(True)
    b = b0.t() if transposed else b0  # a strided view, as the backward pass passes Wᵀ
    up = torch.randn(37, 53, generator=g)
    y = mm_nt(a, b)
    y.backward(up)
    a64, b64, up64 = a.detach().double(), b.detach().double(), up.double()
    assert y.dtype == torch.float32 and y.shape == (37, 53)
    assert _rel(y, a64 @ b64.t()) < 1e-6
    assert _rel(a.grad, up64 @ b64) < 1e-6
    grad_b = up64.t() @ a64
    assert _rel(b0.grad, grad_b.t() if transposed else grad_b) < 1e-6


def test_layer_equals_nn_linear_with_bias_on_3d_input_and_keeps_its_state_dict():
    torch.manual_seed(0)
    ref = nn.Linear(24, 40)
    ours = nn.Sequential(nn.Linear(24, 40))
    ours[0].load_state_dict(ref.state_dict())
    assert use_onednn_linear(ours) == 1 and type(ours[0]) is OneDNNLinear
    assert list(ours.state_dict()) == ["0.weight", "0.bias"]
    x = torch.randn(3, 5, 24)
    ya, yb = ref(x), ours(x)
    (ya * x.sum(-1, keepdim=True)).sum().backward()
    (yb * x.sum(-1, keepdim=True)).sum().backward()
    assert ya.shape == yb.shape and _rel(yb, ya) < 1e-6
    for p, q in zip(ref.parameters(), ours.parameters(), strict=True):
        assert _rel(q.grad, p.grad) < 1e-6


def test_other_dtypes_and_autocast_run_nn_linear_unchanged():
    """Where ATen does not use MKL's float32 SGEMM (float64, or bf16 under autocast) the layer is
    ``nn.Linear`` bit for bit."""
    torch.manual_seed(0)
    ref = nn.Linear(16, 8)
    ours = OneDNNLinear(16, 8)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 16)
    assert torch.equal(ours.double()(x.double()), ref.double()(x.double()))
    ref.float(), ours.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = ref(x), ours(x)
    assert a.dtype == torch.bfloat16 and torch.equal(a, b)


def test_compiled_layer_matches_eager():
    """inductor keeps ``mm_nt`` as one call (its own oneDNN lowering wants frozen weights): the compiled
    forward and backward give the eager values."""
    torch.manual_seed(0)
    layer = OneDNNLinear(32, 48)
    x = torch.randn(2, 7, 32)
    y = layer(x)
    y.square().sum().backward()
    eager = (y.detach(), layer.weight.grad.clone(), layer.bias.grad.clone())
    layer.zero_grad()
    yc = torch.compile(layer, dynamic=True)(x)
    yc.square().sum().backward()
    for a, b in zip((yc.detach(), layer.weight.grad, layer.bias.grad), eager, strict=True):
        assert _rel(a, b) < 1e-6


def test_load_model_switch(tiny_model_dir):
    """``true``: every linear layer, the head included, is a ``OneDNNLinear``; ``false`` leaves them all
    ``nn.Linear``; the logits agree to float32 rounding. The default is on for float32 on x86-64 CPUs."""
    on, _ = load_model(ModelConfig(name=str(tiny_model_dir), onednn_linear=True))
    default, _ = load_model(ModelConfig(name=str(tiny_model_dir)))
    assert isinstance(default.lm_head, OneDNNLinear) == on_by_default()
    off, _ = load_model(ModelConfig(name=str(tiny_model_dir), onednn_linear=False))
    n_linear = sum(type(m) is nn.Linear for m in off.modules())
    assert n_linear > 0 and sum(type(m) is OneDNNLinear for m in on.modules()) == n_linear
    assert not any(type(m) is nn.Linear for m in on.modules())
    ids = torch.randint(4, 60, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert _rel(on(input_ids=ids).logits, off(input_ids=ids).logits) < 1e-5
    bf16, _ = load_model(ModelConfig(name=str(tiny_model_dir), dtype="bfloat16"))
    assert not any(isinstance(m, OneDNNLinear) for m in bf16.modules())  # default: float32 only


def test_training_follows_the_aten_run(tiny_model_dir, tmp_path):
    """Four DPO steps with and without: step 1 is log 2 in both (policy and reference share the kernels),
    and the losses agree to float32 rounding."""
    data = write_jsonl(tmp_path / "pairs.jsonl", standard_rows(16))
    runs = {v: train(tiny_config(tiny_model_dir, data, tmp_path / v, f"model.onednn_linear={v}"))
            for v in ("true", "false")}
    a, b = ([h["loss"] for h in runs[v].history] for v in ("true", "false"))
    assert a[0] == b[0] == pytest.approx(math.log(2), abs=1e-6)
    assert len(a) == 4 and max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-5


def test_reference_cache_key_names_the_kernels():
    """A reference scored by MKL and reused by a oneDNN policy (or the other way round) left SmolLM2's
    step-1 loss 7.8e-7 off log 2 in the speed benchmark: the kernels are part of the cache key (and a
    model without them keeps the key caches already hold)."""
    from conftest import make_model

    from duelist.models.reference import micro_batch_key

    model = make_model(64)
    before = micro_batch_key(model, "m", [], [], layout="shared")
    use_onednn_linear(model)
    assert micro_batch_key(model, "m", [], [], layout="shared") != before


@pytest.mark.parametrize("keep", [False, True])
def test_head_follows_its_layer_onto_onednn(keep, monkeypatch):
    """The chunked head is a custom function, not its ``nn.Linear``: it runs its products through
    ``mm_nt`` when the head layer is a ``OneDNNLinear`` (forward, the recompute in backward and the hidden
    states' gradient; the weight's gradient stays with ATen, as in the layer), with the
    same log-probs and gradients as ATen's to float32 rounding."""
    from conftest import make_model
    from helpers import random_padded_batch

    import duelist.models.logprobs as logprobs
    from duelist.data.collate import TokenBatch

    calls = []
    monkeypatch.setattr(logprobs, "mm_nt", lambda a, b: calls.append(a.shape) or mm_nt(a, b))
    model = make_model(257, seed=3)
    tb = TokenBatch.from_padded(*random_padded_batch(257)).tensors()
    runs = []
    for onednn in (False, True):
        if onednn:
            use_onednn_linear(model)
        model.zero_grad()
        sums = logprobs.LogProbModel(model, 5, keep)(tb).sums
        (sums * torch.arange(1.0, 7.0)).sum().backward()
        runs.append((sums.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
        assert bool(calls) == onednn
    (a, ga), (b, gb) = runs
    assert _rel(b, a) < 1e-6
    for n in ga:
        assert _rel(gb[n], ga[n]) < 1e-5, n
    rows = sum(s[0] for s in calls)
    assert rows == (2 if keep else 3) * tb["source"].shape[0]  # forward, grad_h, and without keep the recompute
