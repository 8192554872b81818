"""The training loop: DPO at initialisation, equivalences (accumulation, resume, processes), outputs."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import standard_rows, write_jsonl
from helpers import accumulate, read_metrics, tiny_config
from safetensors.torch import load_file

from duelist.data.sources import DataError
from duelist.train.run import Run, train


@pytest.fixture
def data(tmp_path):
    return write_jsonl(tmp_path / "pairs.jsonl", standard_rows(16))


def test_first_step_loss_is_log2_and_margin_zero(tiny_model_dir, data, tmp_path):
    """At θ = θ_ref every log-ratio is exactly 0 (reference scored on identical batches), so
    ℓ(β·0) = log 2, margins 0, and no pair counts as correctly ranked."""
    res = train(tiny_config(tiny_model_dir, data, tmp_path / "run", "train.steps=1"))
    m = res.history[0]
    assert m["loss"] == pytest.approx(math.log(2), abs=1e-6)  # float32 sum of 8 values
    assert m["rewards/margin"] == 0.0 and m["rewards/accuracy"] == 0.0 and m["log_ratio/mean"] == 0.0


def test_grad_accumulation_equals_big_batch(tiny_model_dir, data, tmp_path):
    """Batch 8 in one micro-batch vs 4 micro-batches of 2: same loss, same gradients (≤ 1e-5)."""
    grads, losses = [], []
    for accum in (1, 4):
        t = Run(tiny_config(tiny_model_dir, data, tmp_path / f"a{accum}", f"train.grad_accum={accum}"))
        sums = accumulate(t, 0)
        losses.append(float(sums["loss"]) / 8)
        grads.append({n: p.grad.clone() for n, p in t.learner.model.named_parameters()})
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-5, rtol=0), n


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "duelist.cli", "train", *args]


def _args(model, data, out, steps=40):
    return [
        f"model.name={model}",
        f"data.train={data}",
        f"train.output_dir={out}",
        f"train.steps={steps}",
        "train.batch_size=4",
        "optim.lr=1e-3",
        "train.save_every=5",
        "train.progress=false",
        "train.tensorboard=false",
        "train.threads=1",
    ]


def test_resume_after_kill9_equals_uninterrupted(tiny_model_dir, data, tmp_path):
    env = {**os.environ, "DUELIST_CACHE": str(tmp_path / "cache")}
    subprocess.run(_cli(*_args(tiny_model_dir, data, tmp_path / "full")), check=True, env=env, capture_output=True)
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli(*_args(tiny_model_dir, data, run)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        m = run / "metrics.jsonl"
        if m.exists() and len(m.read_text().splitlines()) >= 17:
            break
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "final").exists(), "the run finished before it could be killed"
    killed_at = len(read_metrics(run))
    assert killed_at < 40
    subprocess.run(_cli(*_args(tiny_model_dir, data, run), "--resume"), check=True, env=env, capture_output=True)
    full, resumed = read_metrics(tmp_path / "full"), read_metrics(run)
    assert [m["step"] for m in resumed] == list(range(1, 41))
    assert max(abs(a["loss"] - b["loss"]) for a, b in zip(full, resumed, strict=True)) <= 1e-6
    wa, wb = load_file(tmp_path / "full/final/model.safetensors"), load_file(run / "final/model.safetensors")
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-6


def test_two_processes_equal_one(tiny_model_dir, data, tmp_path):
    """torchrun --nproc_per_node 2 (gloo) with global batch 4 = 1 process with batch 4."""
    env = {**os.environ, "DUELIST_CACHE": str(tmp_path / "cache")}
    args = _args(tiny_model_dir, data, tmp_path / "one", steps=6)
    subprocess.run(_cli(*args), check=True, env=env, capture_output=True)
    args2 = _args(tiny_model_dir, data, tmp_path / "two", steps=6)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "duelist.cli",
        "train",
        *args2,
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert len(one) == len(two) == 6
    for a, b in zip(one, two, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["rewards/margin"] == pytest.approx(b["rewards/margin"], abs=1e-5)
        assert b["tokens"] == a["tokens"]  # both processes' tokens are counted
    wa, wb = load_file(tmp_path / "one/final/model.safetensors"), load_file(tmp_path / "two/final/model.safetensors")
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-5


def test_final_model_loads_with_plain_transformers(tiny_model_dir, data, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t = Run(tiny_config(tiny_model_dir, data, tmp_path / "run"))
    res = t.fit()
    plain = AutoModelForCausalLM.from_pretrained(res.final_dir)
    AutoTokenizer.from_pretrained(res.final_dir)
    ids = torch.tensor([[1, 10, 20, 30]])
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits, t.learner.model(ids).logits, atol=1e-6)
        before = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(ids).logits
    assert not torch.allclose(plain(ids).logits, before, atol=1e-4)  # it did train


def test_invalid_record_stops_before_training_and_writes_nothing(tiny_model_dir, tmp_path):
    rows = standard_rows(6)
    rows[4] = {"prompt": "x", "chosen": "same", "rejected": "same"}
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=r"bad.jsonl, record 5, field 'rejected': identical"):
        train(tiny_config(tiny_model_dir, data, tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    res = train(
        tiny_config(
            tiny_model_dir, data, tmp_path / "run", "data.on_invalid=skip", "train.batch_size=5", "train.steps=1"
        )
    )
    assert res.history[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)


def test_existing_run_is_not_overwritten(tiny_model_dir, data, tmp_path):
    cfg = tiny_config(tiny_model_dir, data, tmp_path / "run", "train.steps=1")
    train(cfg)
    before = (tmp_path / "run/metrics.jsonl").read_text()
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg)
    assert (tmp_path / "run/metrics.jsonl").read_text() == before
