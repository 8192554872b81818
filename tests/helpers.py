"""Small helpers shared by trainer tests."""

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


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
