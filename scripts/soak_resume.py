"""Soak test of exact resume: kill small CPU training runs with SIGKILL at random instants, resume each
time with ``duelist train CONFIG --resume``, and compare with an uninterrupted run.

Only the public command line is used (subprocesses), so this checks whatever the training loop is.
Kill points alternate between two kinds:
* ``random``: a quarter uniform in the process's start-up, the others after a step drawn uniformly among
  those it has left, plus a uniform fraction of a step (some of these land in a checkpoint write too);
* ``write``: the moment a checkpoint (or ``final/``) is being written, i.e. as soon as a temporary
  ``.tmp-*`` directory appears in the run folder, before its atomic rename.
A chain starts a fresh run folder and kills and resumes it until a process finishes on its own; then its
``metrics.jsonl`` (every step's loss, full float precision) and ``final/model.safetensors`` must equal
the uninterrupted run's bit for bit. After every kill the steps logged so far are compared too, so the
kill point whose resume went wrong is the one counted as inexact.

    .venv/bin/python scripts/soak_resume.py --kills 50          # prints the count of exact resumes

The tiny model and data come from the test suite's fixtures (tests/conftest.py). ``tests/test_fault_injection.py``
runs a few kill points of the same procedure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Setup:
    """A tiny model, its data and the uninterrupted run everything is compared with."""

    work: Path
    model: Path
    data: Path
    steps: int
    save_every: int
    reference_losses: dict[int, float] = field(default_factory=dict)
    reference_weights: dict[str, bytes] = field(default_factory=dict)
    first_step: float = 0.0  # seconds from the process's start to its first logged step
    duration: float = 0.0  # seconds from the process's start to its exit

    def args(self, out: Path) -> list[str]:
        return [
            f"model.name={self.model}",
            f"data.train={self.data}",
            f"train.output_dir={out}",
            f"train.steps={self.steps}",
            "train.batch_size=4",
            "optim.lr=1e-3",
            f"train.save_every={self.save_every}",
            "train.keep_checkpoints=2",
            "train.progress=false",
            "train.tensorboard=false",
            "train.threads=1",
        ]

    def env(self) -> dict[str, str]:
        return {**os.environ, "DUELIST_CACHE": str(self.work / "cache"), "PYTHONUNBUFFERED": "1"}

    def command(self, out: Path, resume: bool) -> list[str]:
        return [sys.executable, "-m", "duelist.cli", "train", *self.args(out), *(["--resume"] if resume else [])]


def build(work: Path, steps: int = 24, save_every: int = 2) -> Setup:
    """Write the tiny model and data under ``work`` and run the uninterrupted reference."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_model, make_tokenizer, standard_rows, write_jsonl

    tok = make_tokenizer()
    model = work / "tiny-llama"
    make_model(len(tok)).save_pretrained(model)
    tok.save_pretrained(model)
    s = Setup(work, model, write_jsonl(work / "pairs.jsonl", standard_rows(16)), steps, save_every)
    t0 = time.perf_counter()
    run = work / "uninterrupted"
    proc = subprocess.Popen(s.command(run, False), env=s.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while proc.poll() is None and not losses(run):
        time.sleep(0.01)
    s.first_step = time.perf_counter() - t0
    err = proc.communicate()[1].decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"the uninterrupted run failed:\n{err[-3000:]}")
    s.duration = time.perf_counter() - t0
    s.reference_losses = losses(work / "uninterrupted")
    s.reference_weights = weights(work / "uninterrupted")
    return s


def losses(run: Path) -> dict[int, float]:
    """step → loss of every complete line of ``metrics.jsonl`` (a line cut by a kill is ignored)."""
    out = {}
    path = run / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            m = json.loads(line)
        except ValueError:
            continue
        out[m["step"]] = m["loss"]
    return out


def weights(run: Path) -> dict[str, bytes]:
    from safetensors.torch import load_file

    return {k: v.numpy().tobytes() for k, v in load_file(run / "final" / "model.safetensors").items()}


def _temporary(run: Path) -> set[Path]:
    """Temporary directories of checkpoint and ``final/`` writes (gone once a write's rename is done)."""
    return {p for d in (run, run / "checkpoints") if d.is_dir() for p in d.iterdir() if p.name.startswith(".tmp-")}


def _resume_step(run: Path) -> int:
    """The step a resumed process starts at (its newest intact checkpoint)."""
    from duelist.train.checkpoint import CheckpointError, latest_intact_checkpoint

    try:
        found = latest_intact_checkpoint(run)
    except CheckpointError:
        return 0
    return found.step if found else 0


def _logged_since(run: Path, since: float) -> dict[int, float]:
    path = run / "metrics.jsonl"
    return losses(run) if path.exists() and path.stat().st_mtime >= since else {}


def kill_at(proc: subprocess.Popen, run: Path, mode: str, setup: Setup, rng: random.Random) -> str | None:
    """Kill ``proc`` (just started) at an instant drawn by ``mode``; None if it finished first, else
    where the kill landed: ``write`` (a checkpoint or ``final/`` was being written: a new temporary
    directory is left behind), ``start-up`` (before the first step) or ``training``.

    ``random`` draws a quarter of its instants uniformly in the start-up, the others after a step drawn
    uniformly among those left, plus a uniform fraction of a step; ``write`` waits for a write to begin."""
    started, wall = time.monotonic(), time.time()
    before = _temporary(run)
    step_time = (setup.duration - setup.first_step) / setup.steps
    startup = mode == "random" and rng.random() < 0.25
    delay = rng.uniform(0, 0.9 * setup.first_step) if startup else rng.uniform(0, step_time)
    after_step = rng.randint(min(_resume_step(run) + 1, setup.steps), setup.steps)
    fired: float | None = None
    while proc.poll() is None:
        now = time.monotonic()
        if mode == "write":
            if _temporary(run) - before:
                break
        elif startup:
            if now - started >= delay:
                break
        elif fired is None:
            if after_step in _logged_since(run, wall):
                fired = now
        elif now - fired >= delay:
            break
        time.sleep(0.0005)
    if proc.poll() is not None:
        return None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if _temporary(run) - before:
        return "write"
    return "training" if _logged_since(run, wall) else "start-up"


@dataclass
class KillPoint:
    chain: int
    mode: str  # how the instant was drawn: random or write
    landed: str  # where it landed: start-up, training or write
    exact: bool = True


def chain(setup: Setup, number: int, max_kills: int, rng: random.Random) -> list[KillPoint]:
    """One run folder killed and resumed until it finishes (or ``max_kills`` kills, then run to the end)."""
    run = setup.work / f"chain-{number}"
    points: list[KillPoint] = []
    resume = False
    while True:
        mode = ("random", "write")[(number + len(points)) % 2]
        proc = subprocess.Popen(setup.command(run, resume), env=setup.env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        landed = kill_at(proc, run, mode, setup, rng) if len(points) < max_kills else None
        err = proc.communicate()[1].decode(errors="replace")
        if landed is not None:
            points.append(KillPoint(number, mode, landed))
        else:
            if proc.returncode != 0:
                raise RuntimeError(f"chain {number}: the resumed run failed:\n{err[-3000:]}")
            break
        got = losses(run)
        if any(got[s] != setup.reference_losses[s] for s in got):
            points[-1].exact = False
        resume = True
    final_exact = losses(run) == setup.reference_losses and weights(run) == setup.reference_weights
    for p in points:
        p.exact = p.exact and final_exact
    return points


def soak(setup: Setup, kills: int, seed: int = 0, per_chain: int = 6) -> list[KillPoint]:
    rng = random.Random(seed)
    points: list[KillPoint] = []
    number = 0
    while len(points) < kills:
        points += chain(setup, number, min(per_chain, kills - len(points)), rng)
        number += 1
        print(f"  chain {number}: {len(points)} kill points so far, {sum(p.exact for p in points)} exact, "
              f"{sum(p.landed == 'write' for p in points)} during writes", flush=True)
    return points


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=50, help="kill points in all (default 50)")
    ap.add_argument("--steps", type=int, default=24, help="optimizer steps per run (default 24)")
    ap.add_argument("--save-every", type=int, default=2, help="checkpoint cadence (default 2)")
    ap.add_argument("--per-chain", type=int, default=6, help="kills per run folder before it may finish")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="duelist-soak-") as tmp:
        work = a.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        setup = build(work, a.steps, a.save_every)
        print(f"uninterrupted run: {a.steps} steps, first logged at {setup.first_step:.1f}s, done at "
              f"{setup.duration:.1f}s (measured under whatever load runs here)", flush=True)
        points = soak(setup, a.kills, a.seed, a.per_chain)
    exact = sum(p.exact for p in points)
    landed = {k: sum(p.landed == k for p in points) for k in ("start-up", "training", "write")}
    print(f"kill points: {len(points)}: {sum(p.mode == 'random' for p in points)} at random instants, "
          f"{sum(p.mode == 'write' for p in points)} when a write began; landed in start-up "
          f"{landed['start-up']}, in training {landed['training']}, while a checkpoint or final/ was being "
          f"written {landed['write']}")
    print(f"exact resumes: {exact}/{len(points)} (bit-identical per-step losses and final weights)")
    return 0 if exact == len(points) else 1


if __name__ == "__main__":
    sys.exit(main())
