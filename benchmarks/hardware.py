"""What the machine can do, measured in the benchmark's own run: the matmul rate and the memory bandwidth that
the FLOP floors and generation limits of ``vs_trl.py`` and ``vs_trl_online.py`` are taken against."""

from __future__ import annotations

import time
from typing import Any

import torch


def matmul_gflops(n: int = 4096, reps: int = 3, device: str = "cpu", dtype: torch.dtype = torch.float32,
                  onednn: bool = False) -> float:
    """Best of ``reps`` n×n×n matmuls on ``device`` in ``dtype``, in GFLOP/s (2n³ FLOPs each). ``onednn``: a
    float32 CPU product by oneDNN (``duelist.models.onednn``, what duelist's linear layers run) instead of
    ATen's BLAS (MKL, which on AMD CPUs does not pick its fastest kernels)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)

    def mm() -> None:
        if onednn:
            from duelist.models.onednn import mm_nt

            mm_nt(a, b)
        else:
            torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()

    mm()
    best = min(_timed(mm) for _ in range(reps))
    return 2 * n**3 / best / 1e9


def bandwidth_gbs(gib: float = 1.0, reps: int = 5) -> float:
    """Best of ``reps`` copies of a ``gib`` GiB float32 tensor, counting the bytes read and written, GB/s."""
    src = torch.randn(int(gib * 2**30) // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = min(_timed(lambda: dst.copy_(src)) for _ in range(reps))
    return 2 * src.numel() * 4 / best / 1e9


def _timed(f: Any) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t
