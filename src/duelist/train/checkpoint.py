"""Checkpoints in safetensors, written atomically, and exact resume.

A checkpoint directory ``checkpoints/step-000040`` holds:
* ``model.safetensors``: the trainable parameters (all weights for full fine-tuning, adapters for LoRA);
* ``optimizer.safetensors``: AdamW moments and step counts, keyed by parameter name;
* ``state.safetensors``: RNG states; ``state.json``: step, scheduler state;
* ``source.safetensors``: what the source of examples keeps between steps (e.g. an online run's anchors), if any.
It is written to a temporary directory and renamed into place, then ``latest`` (a one-line file) is
replaced atomically, so a run killed at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn


def trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    np_state = np.random.get_state()
    tensors["numpy.keys"] = torch.from_numpy(np_state[1].astype(np.int64))
    meta = {"python": random.getstate(), "numpy": [np_state[0], *np_state[2:]]}
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
        if states:
            torch.cuda.set_rng_state_all(states)
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_meta = meta["numpy"]
    np.random.set_state((np_meta[0], tensors["numpy.keys"].numpy().astype(np.uint32), *np_meta[1:]))


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); earlier checkpoints are intact."""


def save_checkpoint(
    root: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    keep: int = 2,
    extra: dict[str, torch.Tensor] | None = None,
) -> Path:
    ckpts = root / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=ckpts, prefix=".tmp-"))
    try:
        _write(tmp, step, model, optimizer, scheduler, extra)
    except Exception as e:  # safetensors reports a full disk as its own error type, not OSError
        shutil.rmtree(tmp, ignore_errors=True)
        free = shutil.disk_usage(ckpts).free / 2**30
        raise CheckpointError(
            f"could not write the step-{step} checkpoint in {ckpts} ({free:.1f} GiB free): {e}. "
            "The partial files are removed; earlier checkpoints are untouched"
        ) from e
    final = ckpts / f"step-{step:06d}"
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    latest_tmp = ckpts / ".latest.tmp"
    latest_tmp.write_text(final.name + "\n")
    os.replace(latest_tmp, ckpts / "latest")
    _fsync_dir(ckpts)
    for old in sorted(ckpts.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _write(
    tmp: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    extra: dict[str, torch.Tensor] | None,
) -> None:
    """Every file of a checkpoint into ``tmp``, flushed to disk."""
    params = trainable(model)
    save_file({n: p.detach().contiguous().cpu() for n, p in params.items()}, str(tmp / "model.safetensors"))
    opt_tensors: dict[str, torch.Tensor] = {}
    for name, p in params.items():
        for k, v in optimizer.state.get(p, {}).items():
            opt_tensors[f"{name}::{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu()
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    rng_t, rng_meta = _rng_state()
    save_file(rng_t, str(tmp / "state.safetensors"))
    _write_json(tmp / "state.json", {"step": step, "scheduler": scheduler.state_dict(), "rng": rng_meta})
    if extra:
        save_file({k: v.detach().contiguous().cpu() for k, v in extra.items()}, str(tmp / "source.safetensors"))
    for f in tmp.iterdir():
        with f.open("rb") as fh:
            os.fsync(fh.fileno())


def latest_checkpoint(root: Path) -> Path | None:
    pointer = root / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = root / "checkpoints" / pointer.read_text().strip()
    return path if path.is_dir() else None


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> tuple[int, dict[str, torch.Tensor]]:
    """Restore weights, optimizer moments, scheduler and RNG states; returns the step to resume at and the
    source's tensors (empty if it kept none)."""
    params = trainable(model)
    weights = load_file(str(path / "model.safetensors"))
    missing = set(params) - set(weights)
    if missing:
        raise ValueError(f"{path}: checkpoint lacks parameters {sorted(missing)[:5]}; was it another model?")
    opt = load_file(str(path / "optimizer.safetensors"))
    group = optimizer.param_groups[0]
    step_on_device = bool(group.get("fused") or group.get("capturable"))  # else AdamW keeps `step` on CPU
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(weights[name])
            state = {}
            for k, v in opt.items():
                pname, key = k.split("::", 1)
                if pname == name:
                    state[key] = v if key == "step" and not step_on_device else v.to(p.device)
            if state:
                optimizer.state[p] = state
    meta = json.loads((path / "state.json").read_text())
    scheduler.load_state_dict(meta["scheduler"])
    for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr(), strict=True):
        group["lr"] = lr  # the scheduler writes rates only when it steps; the next update needs this one
    _set_rng_state(load_file(str(path / "state.safetensors")), meta["rng"])
    source = path / "source.safetensors"
    return int(meta["step"]), (load_file(str(source)) if source.is_file() else {})
