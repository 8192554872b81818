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


def _three(tmp_path):
    model, opt, sched = _state()
    return [ckpt.save_checkpoint(tmp_path, s, model, opt, sched, keep=3) for s in (1, 2, 3)]


def test_manifest_records_size_and_sha256_of_every_file(tmp_path):
    import hashlib
    import json

    (_, _, c3) = _three(tmp_path)
    files = json.loads((c3 / "manifest.json").read_text())["files"]
    assert sorted(files) == sorted(ckpt.FILES)
    for name, info in files.items():
        data = (c3 / name).read_bytes()
        assert info == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert ckpt.checkpoint_problem(c3) is None


def test_truncated_newest_falls_back_to_the_previous(tmp_path):
    _, c2, c3 = _three(tmp_path)
    size = (c3 / "model.safetensors").stat().st_size
    with (c3 / "model.safetensors").open("r+b") as f:
        f.truncate(size // 2)
    found = ckpt.latest_intact_checkpoint(tmp_path)
    assert found.path == c2 and found.step == 2
    assert found.note == (
        f"skipped damaged checkpoint(s) step-000003: model.safetensors has {size // 2} bytes, manifest.json says "
        f"{size} (truncated or overwritten); resuming from step-000002"
    )
    assert ckpt.latest_checkpoint(tmp_path) == c2


def test_same_size_corruption_and_missing_files_are_detected(tmp_path):
    c1, c2, c3 = _three(tmp_path)
    data = bytearray((c3 / "optimizer.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (c3 / "optimizer.safetensors").write_bytes(bytes(data))
    (c2 / "state.json").unlink()
    found = ckpt.latest_intact_checkpoint(tmp_path)
    assert found.path == c1
    assert [(p.name, why) for p, why in found.skipped] == [
        ("step-000003", "optimizer.safetensors does not match its SHA-256 in manifest.json (corrupted)"),
        ("step-000002", "state.json is missing"),
    ]


def test_no_intact_checkpoint_is_a_clear_error(tmp_path):
    for c in _three(tmp_path):
        (c / "model.safetensors").write_bytes(b"")
    with pytest.raises(ckpt.CheckpointError) as e:
        ckpt.latest_intact_checkpoint(tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"no intact checkpoint in {tmp_path / 'checkpoints'} (step-000003: model.safetensors has 0")
    assert "step-000001" in msg and "--overwrite" in msg and "\n" not in msg and isinstance(e.value, USER_ERRORS)
    assert ckpt.latest_intact_checkpoint(tmp_path / "elsewhere") is None  # no checkpoints at all: a fresh start


def test_checkpoints_without_manifest_are_checked_by_structure(tmp_path):
    """Checkpoints written before manifests: accepted when whole, skipped when a safetensors file is cut."""
    c1, c2, c3 = _three(tmp_path)
    for c in (c1, c2, c3):
        (c / "manifest.json").unlink()
    assert ckpt.latest_intact_checkpoint(tmp_path).path == c3
    size = (c3 / "state.safetensors").stat().st_size
    with (c3 / "state.safetensors").open("r+b") as f:
        f.truncate(size - 1)
    found = ckpt.latest_intact_checkpoint(tmp_path)
    assert found.path == c2
    why = f"state.safetensors has {size - 1} bytes, its header says {size} (truncated or overwritten)"
    assert found.skipped[0][1] == why


def test_loading_a_damaged_file_is_a_checkpoint_error_not_a_traceback(tmp_path):
    model, opt, sched = _state()
    c = ckpt.save_checkpoint(tmp_path, 1, model, opt, sched)
    (c / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(ckpt.CheckpointError, match=r"step-000001: cannot load this checkpoint \(SafetensorError"):
        ckpt.load_checkpoint(c, model, opt, sched)


def test_saving_after_a_fallback_removes_the_skipped_and_leftover_files(tmp_path):
    """Resumed from step 2 because step 3 is damaged: saving step 3 again replaces it; a temporary
    directory of a killed write is removed; keep=2 keeps steps 2 and 3."""
    model, opt, sched = _state()
    *_, c3 = _three(tmp_path)
    (c3 / "model.safetensors").write_bytes(b"")
    (tmp_path / "checkpoints" / ".tmp-killed").mkdir()
    ckpt.save_checkpoint(tmp_path, 3, model, opt, sched, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step-000002", "step-000003"]
    assert ckpt.checkpoint_problem(c3) is None
    (c3 / "model.safetensors").write_bytes(b"")
    ckpt.save_checkpoint(tmp_path, 2, model, opt, sched, keep=2)  # a later damaged step is out of sequence
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == ["step-000002"]
