"""Small helpers shared by tests."""

from __future__ import annotations

import json
from pathlib import Path

from duelist.config import Config, load_config


def tiny_config(model_dir: Path, data: Path, out: Path, *overrides: str) -> Config:
    return load_config(
        None,
        [
            f"model.name={model_dir}",
            f"data.train={data}",
            f"train.output_dir={out}",
            "train.steps=4",
            "train.batch_size=8",
            "optim.lr=1e-3",
            "optim.warmup=0",
            "train.progress=false",
            "train.tensorboard=false",
            *overrides,
        ],
    )


def accumulate(run, step: int = 0):
    """Forward and backward of an offline run's step ``step`` (gradients left in ``.grad``): the per-metric
    sums over its pairs, as ``Learner.accumulate`` returns them."""
    src = run.source
    return run.learner.accumulate(src.pairs, src.plan.micro_batches(step), src.reference).sums


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


def random_padded_batch(vocab: int, n: int = 6, t: int = 11, seed: int = 1):
    """Random ids, right padding of 0/2/4 tokens and response masks starting at 3 or 4: (ids, att, mask)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (n, t), generator=g)
    att = torch.ones_like(ids)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for i in range(n):
        length = t - (i % 3) * 2
        att[i, length:] = 0
        mask[i, 3 + i % 2 : length] = True
    return ids, att, mask
