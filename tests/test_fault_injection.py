"""Fault injection through the public command line: runs killed with SIGKILL at random instants and while
checkpoints are written resume to exactly the uninterrupted run, and a damaged newest checkpoint is skipped.

The procedure is ``scripts/soak_resume.py`` (which does the same at 50+ kill points), here at a few.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "soak_resume.py"


@pytest.fixture(scope="module")
def soak():
    spec = importlib.util.spec_from_file_location("soak_resume", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup(soak, tmp_path_factory):
    return soak.build(tmp_path_factory.mktemp("soak"), steps=12, save_every=2)


def test_killed_runs_resume_exactly(soak, setup):
    """4 kill points (alternating random instants and checkpoint writes), each followed by --resume:
    every per-step loss and every final weight is bit-identical to the uninterrupted run's."""
    points = soak.soak(setup, kills=4, seed=1, per_chain=4)
    assert len(points) == 4 and [p.mode for p in points] == ["random", "write", "random", "write"]
    assert all(p.exact for p in points), points
    assert any(p.landed == "write" for p in points)  # a write-timed kill lands before the write's atomic rename


def test_damaged_newest_checkpoint_falls_back_and_resumes_exactly(soak, setup):
    """The uninterrupted run's folder with final/ removed and its newest checkpoint (step 12) cut short:
    --resume says so, resumes from step 10, and steps 11-12 and the final weights equal the original's."""
    run = setup.work / "damaged"
    shutil.copytree(setup.work / "uninterrupted", run)
    shutil.rmtree(run / "final")
    model = run / "checkpoints" / "step-000012" / "model.safetensors"
    with model.open("r+b") as f:
        f.truncate(model.stat().st_size // 2)
    out = subprocess.run(setup.command(run, True), env=setup.env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "skipped damaged checkpoint(s) step-000012: model.safetensors has" in out.stderr
    assert "resumed from" in out.stderr and "(step 10)" in out.stderr
    assert soak.losses(run) == setup.reference_losses and soak.weights(run) == setup.reference_weights
