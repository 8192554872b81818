"""A checkpoint that cannot be written (full disk) leaves no partial files and the earlier ones intact."""

from __future__ import annotations

import pytest
import torch
from conftest import make_model

import duelist.train.checkpoint as ckpt
from duelist.errors import USER_ERRORS


def _state():
    model = make_model(64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.tensor([[1, 2, 3]])).logits.sum().backward()
    opt.step()
    return model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def test_failed_write_removes_partial_files_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    model, opt, sched = _state()
    first = ckpt.save_checkpoint(tmp_path, 1, model, opt, sched)
    before = {p.name: p.read_bytes() for p in first.iterdir()}

    real = ckpt.save_file

    def full_disk(tensors, path):
        if path.endswith("optimizer.safetensors"):  # the model file of step 2 is written, then the disk fills
            raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
        real(tensors, path)

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    with pytest.raises(ckpt.CheckpointError, match=r"step-2 checkpoint in .*checkpoints .*No space left") as e:
        ckpt.save_checkpoint(tmp_path, 2, model, opt, sched)
    assert isinstance(e.value, USER_ERRORS)  # one clean line from the CLI, no traceback
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step-000001"]
    assert ckpt.latest_checkpoint(tmp_path) == first
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before
