"""What ``duelist train`` does with the reliability units wired in: one run per output folder, a resume
that would change the math refused (or allowed and recorded), damaged checkpoints reported in one line,
and non-finite values stopping the run (or skipped and counted) without writing anything partial."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import standard_rows, write_jsonl
from helpers import read_metrics, tiny_config
from safetensors.torch import load_file

from duelist.cli import main
from duelist.errors import USER_ERRORS
from duelist.train.checkpoint import checkpoint_problem
from duelist.train.learner import SKIPPED
from duelist.train.lock import LOCK_FILE
from duelist.train.nonfinite import NonFiniteError
from duelist.train.resume_guard import CHANGES_FILE
from duelist.train.run import Run


@pytest.fixture
def data(tmp_path):
    return write_jsonl(tmp_path / "pairs.jsonl", standard_rows(16))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DUELIST_CACHE", str(tmp_path / "cache"))


def args(model, data, out, *extra: str) -> list[str]:
    return [
        f"model.name={model}", f"data.train={data}", f"train.output_dir={out}", "train.steps=6",
        "train.batch_size=4", "optim.lr=1e-3", "loss.beta=0.1", "train.save_every=2", "train.progress=false",
        "train.tensorboard=false", "train.threads=1", *extra,
    ]


def files(run) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------ one run per folder


def test_second_run_on_a_busy_folder_exits_2_and_a_killed_holder_does_not_block(tiny_model_dir, data, tmp_path,
                                                                                    capsys):
    """A training process holds the folder: a second `duelist train --overwrite` exits 2 naming its pid and
    host and deletes nothing; after `kill -9` of the holder, `--resume` takes the stale lock and finishes."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "duelist.cli", "train", *args(tiny_model_dir, data, run, "train.steps=100")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (run / "checkpoints" / "latest").exists() and time.time() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, "the holder finished before the test could use it"
        assert main(["train", *args(tiny_model_dir, data, run), "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert f"{run} is in use by pid {proc.pid} on {socket.gethostname()}, started " in err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert (run / "checkpoints" / "latest").exists() and (run / "config.yaml").exists()  # nothing deleted
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == proc.pid  # stale: its holder is dead
    assert main(["train", *args(tiny_model_dir, data, run, "train.steps=100"), "--resume"]) == 0
    assert [m["step"] for m in read_metrics(run)] == list(range(1, 101))
    assert not (run / LOCK_FILE).exists() and (run / "final" / "model.safetensors").is_file()


# ------------------------------------------------------------------------------------------- resume safety


@pytest.fixture
def interrupted(tiny_model_dir, data, tmp_path):
    """A 6-step run cut back to its step-4 checkpoint, as if killed in step 5."""
    run = tmp_path / "run"
    assert main(["train", *args(tiny_model_dir, data, run)]) == 0
    for p in ("final", "checkpoints/step-000006"):
        subprocess.run(["rm", "-r", str(run / p)], check=True)
    (run / "checkpoints" / "latest").write_text("step-000004\n")
    return run


def test_resume_with_changed_beta_is_refused_listing_the_difference(tiny_model_dir, data, interrupted, capsys):
    before = files(interrupted)
    assert main(["train", *args(tiny_model_dir, data, interrupted, "loss.beta=0.2", "optim.lr=2e-3"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "loss.beta 0.1 → 0.2" in err and "optim.lr 0.001 → 0.002" in err and "--allow-config-change" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert files(interrupted) == before  # refused before anything was read, loaded or written


def test_allowed_change_continues_and_is_recorded(tiny_model_dir, data, interrupted, capsys):
    changed = args(tiny_model_dir, data, interrupted, "loss.beta=0.2")
    assert main(["train", *changed, "--resume", "--allow-config-change"]) == 0
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "resumed at step 4 with changed settings (--allow-config-change): loss.beta 0.1 → 0.2" in err
    (entry,) = [json.loads(l) for l in (interrupted / CHANGES_FILE).read_text().splitlines()]
    assert entry["step"] == 4 and entry["changes"] == [{"key": "loss.beta", "old": 0.1, "new": 0.2}]
    assert yaml.safe_load((interrupted / "config.yaml").read_text())["loss"]["beta"] == 0.2  # the run follows it now
    assert [m["step"] for m in read_metrics(interrupted)] == [1, 2, 3, 4, 5, 6]
    # from here on the new value is the run's own: resuming with it needs no flag, the old one is refused
    assert main(["train", *changed, "--resume"]) == 0
    assert main(["train", *args(tiny_model_dir, data, interrupted), "--resume"]) == 2


def test_safe_changes_resume_without_the_flag_and_keep_the_config(tiny_model_dir, data, interrupted):
    saved = (interrupted / "config.yaml").read_text()
    safe = ("train.log_every=2", "train.save_every=3", "train.keep_checkpoints=5", "train.on_nonfinite=skip")
    assert main(["train", *args(tiny_model_dir, data, interrupted, *safe), "--resume"]) == 0
    assert (interrupted / "config.yaml").read_text() == saved and not (interrupted / CHANGES_FILE).exists()


def test_config_is_written_atomically_once_the_run_is_assembled(tiny_model_dir, data, tmp_path):
    """config.yaml appears when the run starts (before its first step), with no temporary file left."""
    run = Run(tiny_config(tiny_model_dir, data, tmp_path / "run"))
    try:
        saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
        assert saved == run.cfg.model_dump(mode="json")
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [LOCK_FILE, "config.yaml"]
    finally:
        run.close()
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_online_resume_is_guarded_too(tiny_model_dir, tmp_path, capsys):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"the movie {i} was"} for i in range(8)])
    online = [
        f"model.name={tiny_model_dir}", f"online.prompts={prompts}", "online.judge=intransitive",
        "online.max_new_tokens=4", f"train.output_dir={tmp_path / 'run'}", "train.steps=2", "train.batch_size=4",
        "train.save_every=1", "train.progress=false", "train.tensorboard=false", "train.threads=1",
    ]
    assert main(["train", *online]) == 0
    assert main(["train", *online, "online.temperature=0.7", "--resume"]) == 2
    assert "online.temperature 1.0 → 0.7" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- damaged checkpoints


def test_no_intact_checkpoint_is_one_line_and_exit_2(tiny_model_dir, data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *args(tiny_model_dir, data, run)]) == 0
    for ckpt in (run / "checkpoints").glob("step-*"):
        model = ckpt / "model.safetensors"
        with model.open("r+b") as f:
            f.truncate(100)
    capsys.readouterr()
    assert main(["train", *args(tiny_model_dir, data, run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "error: no intact checkpoint in" in err and "step-000006: model.safetensors has 100 bytes" in err
    assert "step-000004: model.safetensors has 100 bytes" in err
    assert err.count("\n") == 1 and "Traceback" not in err and not (run / LOCK_FILE).exists()


# ------------------------------------------------------------------------------------------ non-finite values


class Poisoned:
    """The run's loss, with NaN multiplied into the per-pair losses of ``rows`` of its ``at``-th call (1-based)
    so that the loss and its gradient go non-finite there."""

    def __init__(self, loss, at: int, rows: list[int]):
        self.loss, self.at, self.rows, self.calls = loss, at, rows, 0

    def __getattr__(self, name):
        return getattr(self.loss, name)

    def __call__(self, stats):
        out = self.loss(stats)
        self.calls += 1
        if self.calls == self.at:
            factor = torch.ones_like(out.losses)
            factor[self.rows] = float("nan")
            return out._replace(losses=out.losses * factor)
        return out


def poisoned_run(cfg, at: int, rows: list[int], resume: bool = False) -> Run:
    run = Run(cfg, resume=resume)
    run.learner.loss = Poisoned(run.learner.loss, at, rows)
    return run


def test_nan_stops_with_step_records_and_quantity_keeping_the_last_checkpoint(tiny_model_dir, data, tmp_path):
    """NaN in pairs 1 and 3 of step 5's batch: the run stops before the update, naming step 5, the loss,
    the gradient norm and the records by index and by file line; checkpoints 3 and 4 are intact, nothing of
    step 5 is written (no checkpoint, no log line, no temporary folder), and the lock is released."""
    out = tmp_path / "run"
    cfg = tiny_config(tiny_model_dir, data, out, "train.steps=6", "train.batch_size=4", "train.save_every=1")
    run = poisoned_run(cfg, at=5, rows=[1, 3])
    batch = run.source.plan.micro_batches(4)[0]
    with pytest.raises(NonFiniteError) as e:
        run.fit()
    bad = [batch[1], batch[3]]
    named = ", ".join(f"{i} ({data}, record {i + 1})" for i in bad)
    msg = str(e.value)
    assert msg.startswith(f"step 5: loss is NaN/inf for record(s) {named}; gradient norm is nan over the batch's")
    assert "train.on_nonfinite=skip" in msg and "\n" not in msg and isinstance(e.value, USER_ERRORS)
    assert [m["step"] for m in read_metrics(out)] == [1, 2, 3, 4]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step-000003", "step-000004"]
    assert all(checkpoint_problem(p) is None for p in (out / "checkpoints").glob("step-*"))
    assert not (out / "final").exists() and not list(out.rglob(".tmp-*")) and not (out / LOCK_FILE).exists()


def test_skip_mode_skips_the_update_and_counts_it(tiny_model_dir, data, tmp_path):
    """train.on_nonfinite=skip: step 5's update is not taken (weights and AdamW state after it equal those
    after step 4, bit for bit), the metric counts 1 skipped update there and 0 elsewhere, and the run ends."""
    out = tmp_path / "run"
    cfg = tiny_config(tiny_model_dir, data, out, "train.steps=6", "train.batch_size=4", "train.save_every=1",
                      "train.keep_checkpoints=10", "train.on_nonfinite=skip")
    res = poisoned_run(cfg, at=5, rows=[2]).fit()
    assert [m[SKIPPED] for m in read_metrics(out)] == [0, 0, 0, 0, 1, 0]
    assert "loss" not in read_metrics(out)[4] and res.final_dir is not None
    ck = out / "checkpoints"
    for name in ("model.safetensors", "optimizer.safetensors"):
        a, b = load_file(ck / "step-000004" / name), load_file(ck / "step-000005" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
        c = load_file(ck / "step-000006" / name)
        assert any(not torch.equal(b[k], c[k]) for k in b), name  # step 6 trained again


def test_stopped_run_resumes_in_skip_mode(tiny_model_dir, data, tmp_path):
    """The remedy after a stop: --resume with train.on_nonfinite=skip (a safe change) from step 4."""
    out = tmp_path / "run"
    base = ["train.steps=6", "train.batch_size=4", "train.save_every=2"]
    with pytest.raises(NonFiniteError):
        poisoned_run(tiny_config(tiny_model_dir, data, out, *base), at=5, rows=[0]).fit()
    cfg = tiny_config(tiny_model_dir, data, out, *base, "train.on_nonfinite=skip")
    poisoned_run(cfg, at=1, rows=[0], resume=True).fit()
    assert [m["step"] for m in read_metrics(out)] == [1, 2, 3, 4, 5, 6]
    assert [m.get(SKIPPED) for m in read_metrics(out)] == [None, None, None, None, 1, 0]
