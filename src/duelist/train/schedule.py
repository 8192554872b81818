"""Learning-rate schedules: linear warm-up, then linear or cosine decay (or constant).

The factor for update ``s`` (0-based) of ``total`` with ``w`` warm-up updates is
``(s + 1) / (w + 1)`` during warm-up, then decays so that the last update still has a non-zero rate.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_steps(warmup: float, total: int) -> int:
    return round(warmup * total) if warmup < 1 else int(warmup)


def lr_factor(step: int, total: int, warmup: int, kind: str) -> float:
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if kind == "constant":
        return 1.0
    frac = (step - warmup) / max(1, total - warmup)
    return 1.0 - frac if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * frac))


def make_scheduler(optimizer: Optimizer, total: int, warmup: float, kind: str) -> LambdaLR:
    w = warmup_steps(warmup, total)
    return LambdaLR(optimizer, lambda s: lr_factor(s, total, w, kind))
