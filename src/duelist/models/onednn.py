"""float32 linear layers on CPU through oneDNN instead of MKL (``model.onednn_linear``).

PyTorch sends a float32 ``nn.Linear`` on CPU to MKL's SGEMM. On AMD CPUs MKL does not pick its fastest
kernels, while oneDNN (also inside PyTorch) dispatches on the instruction set alone. Measured on 2 Zen 4
cores at the speed point's shapes (1728 tokens × 576 → 192…1536): the forward product y = x Wᵀ runs at
213–220 GFLOP/s instead of 186–201, and the input gradient g W at 217–227 instead of 197–206. oneDNN is no
faster for the weight gradient gᵀ x (175–197 vs 172–202), so that one stays with ATen (MKL).

``mm_nt`` is a custom op, so ``torch.compile`` keeps it as one opaque call: inductor's own lowering of
``mkldnn._linear_pointwise`` assumes frozen (constant) weights, which training does not have. The results
are float32 products summed in another order than MKL's: they agree to float32 rounding (≈1e-6 relative,
tested), not bit for bit.
"""

from __future__ import annotations

import platform

import torch
from torch import Tensor, nn


@torch.library.custom_op("duelist::mm_nt", mutates_args=())
def mm_nt(a: Tensor, b: Tensor) -> Tensor:
    """a bᵀ for 2-D float32 CPU tensors (``b`` may be a strided view), computed by oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")


@mm_nt.register_fake
def _(a: Tensor, b: Tensor) -> Tensor:
    return a.new_empty(a.shape[0], b.shape[0])


def _setup(ctx, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
    a, b = ctx.saved_tensors
    grad_a = mm_nt(grad, b.t()) if ctx.needs_input_grad[0] else None  # g b = g (bᵀ)ᵀ
    grad_b = grad.t() @ a if ctx.needs_input_grad[1] else None  # ATen: oneDNN is not faster here
    return grad_a, grad_b


mm_nt.register_autograd(_backward, setup_context=_setup)


def available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def on_by_default() -> bool:
    """x86-64 only, where it was measured; elsewhere (Arm) ATen's BLAS may well be the faster one."""
    return available() and platform.machine().lower() in ("x86_64", "amd64")


def applies(x: Tensor, w: Tensor) -> bool:
    """Where ATen would run MKL's SGEMM: float32 on CPU, outside autocast (under it ATen already uses
    oneDNN's bf16 kernels)."""
    return x.device.type == "cpu" and x.dtype == w.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")


class OneDNNLinear(nn.Linear):
    """``nn.Linear`` whose float32 CPU product goes through ``mm_nt``; anything else runs ``nn.Linear``."""

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        if not applies(x, w):
            return super().forward(x)
        y = mm_nt(x.reshape(-1, x.shape[-1]), w).view(*x.shape[:-1], w.shape[0])
        return y if self.bias is None else y + self.bias


def use_onednn_linear(model: nn.Module) -> int:
    """Turn every plain ``nn.Linear`` of ``model`` into a ``OneDNNLinear`` in place (same parameters and
    state dict; subclasses such as PEFT's LoRA wrappers are left alone, their inner layers are not).
    Returns how many were changed."""
    changed = 0
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = OneDNNLinear
            changed += 1
    return changed
