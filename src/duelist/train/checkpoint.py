"""Checkpoints in safetensors, written atomically, and exact resume.

A checkpoint directory ``checkpoints/step-000040`` holds:
* ``model.safetensors``: the trainable parameters (all weights for full fine-tuning, adapters for LoRA);
* ``optimizer.safetensors``: AdamW moments and step counts, keyed by parameter name;
* ``state.safetensors``: RNG states; ``state.json``: step, scheduler state;
* ``source.safetensors``: what the source of examples keeps between steps (e.g. an online run's anchors), if any;
* ``manifest.json``, written last: the size and SHA-256 of every other file.
It is written to a temporary directory and renamed into place, then ``latest`` (a one-line file) is
replaced atomically, so a run killed at any moment leaves the previous checkpoint intact. What the
rename cannot protect against (a disk or copy that damages files later, a file truncated by hand) the
manifest catches: ``latest_intact_checkpoint`` verifies the newest checkpoint and falls back to the newest
intact one, saying what it skipped and why (the promise of PyTorch DCP / Orbax checkpoints: nothing
damaged or half-written is ever loaded).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

MANIFEST = "manifest.json"
FILES = ("model.safetensors", "optimizer.safetensors", "state.safetensors", "state.json")
log = logging.getLogger(__name__)


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
    """A checkpoint could not be written (e.g. the disk is full; earlier checkpoints are intact), or none
    of a run's checkpoints is intact."""


def _step_of(path: Path) -> int:
    return int(path.name.removeprefix("step-"))


def _checkpoints(ckpts: Path) -> list[Path]:
    """``step-N`` directories, oldest first (by N, not by name: names stop sorting past 999999)."""
    return sorted((p for p in ckpts.glob("step-*") if p.is_dir() and p.name[5:].isdigit()), key=_step_of)


def save_checkpoint(
    root: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    keep: int = 2,
    extra: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the step-``step`` checkpoint atomically, then keep the newest ``keep``. Checkpoints of later
    steps are removed: a run saving step N resumed from N or earlier, so later ones were skipped as damaged.
    Leftover temporary directories of killed writes are removed too (one run per folder: see ``lock``)."""
    ckpts = root / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    for stale in ckpts.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
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
    done = _checkpoints(ckpts)
    for old in [p for p in done if _step_of(p) > step] + [p for p in done if _step_of(p) <= step][:-keep]:
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
    files = {f.name: {"bytes": f.stat().st_size, "sha256": _sha256(f)} for f in sorted(tmp.iterdir())}
    _write_json(tmp / MANIFEST, {"step": step, "files": files})
    for f in tmp.iterdir():
        with f.open("rb") as fh:
            os.fsync(fh.fileno())


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _safetensors_problem(path: Path) -> str | None:
    """Whether a safetensors file is whole: its header parses and its tensors end where the file ends
    (checkpoints written before manifests existed are checked this way)."""
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n)) if 8 + n <= size else None
    except (struct.error, ValueError):
        header = None
    if not isinstance(header, dict):
        return f"{path.name} has no readable safetensors header"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != size:
        return f"{path.name} has {size} bytes, its header says {8 + n + end} (truncated or overwritten)"
    return None


def checkpoint_problem(path: Path) -> str | None:
    """What is wrong with the checkpoint at ``path``, or None if it is intact: every file the manifest
    lists is there with its size and SHA-256 (without a manifest: every file there, safetensors whole)."""
    if not path.is_dir():
        return "not a directory"
    if not (path / MANIFEST).is_file():
        missing = [f for f in FILES if not (path / f).is_file()]
        if missing:
            return f"{missing[0]} is missing (and there is no {MANIFEST})"
        return next(filter(None, (_safetensors_problem(path / f) for f in FILES if f.endswith(".safetensors"))), None)
    try:
        files = json.loads((path / MANIFEST).read_text())["files"]
        expected = {name: (int(v["bytes"]), str(v["sha256"])) for name, v in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{MANIFEST} is unreadable"
    for name in FILES:
        if name not in expected:
            return f"{MANIFEST} does not list {name}"
    for name, (size, digest) in expected.items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != size:
            return f"{name} has {f.stat().st_size} bytes, {MANIFEST} says {size} (truncated or overwritten)"
        if _sha256(f) != digest:
            return f"{name} does not match its SHA-256 in {MANIFEST} (corrupted)"
    return None


@dataclass
class FoundCheckpoint:
    """The checkpoint to resume from, and the newer ones skipped as damaged (path, what is wrong)."""

    path: Path
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def step(self) -> int:
        return _step_of(self.path)

    @property
    def note(self) -> str:
        """One line for the run's log; empty when nothing was skipped."""
        if not self.skipped:
            return ""
        why = "; ".join(f"{p.name}: {problem}" for p, problem in self.skipped)
        return f"skipped damaged checkpoint(s) {why}; resuming from {self.path.name}"


def latest_intact_checkpoint(root: Path) -> FoundCheckpoint | None:
    """The newest intact checkpoint of the run in ``root`` (None if it has none at all). Newer damaged
    ones are verified, skipped and named in ``note``; if every checkpoint is damaged, ``CheckpointError``."""
    candidates = _checkpoints(root / "checkpoints")[::-1]
    skipped = []
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            return FoundCheckpoint(path, skipped)
        skipped.append((path, problem))
    if skipped:
        why = "; ".join(f"{p.name}: {problem}" for p, problem in skipped)
        raise CheckpointError(
            f"no intact checkpoint in {root / 'checkpoints'} ({why}); start the run again with --overwrite"
        )
    return None


def latest_checkpoint(root: Path) -> Path | None:
    """The path of ``latest_intact_checkpoint``; what it skipped goes to the ``duelist`` log (stderr)."""
    found = latest_intact_checkpoint(root)
    if found is None:
        return None
    if found.note:
        log.warning(found.note)
    return found.path


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> tuple[int, dict[str, torch.Tensor]]:
    """Restore weights, optimizer moments, scheduler and RNG states; returns the step to resume at and the
    source's tensors (empty if it kept none). A file that cannot be read is a ``CheckpointError`` naming it
    (verify first: ``checkpoint_problem``)."""
    try:
        return _load(path, model, optimizer, scheduler)
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path}: cannot load this checkpoint ({type(e).__name__}: {e})") from None


def _load(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> tuple[int, dict[str, torch.Tensor]]:
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
