"""Online runs on a tiny model: rounds from config alone, TRL's online-DPO rule by hand, and kill -9 resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers import read_metrics
from safetensors.torch import load_file

from duelist.config import ConfigError, load_config
from duelist.data.tokenize import TokenizedPair
from duelist.judges import RewardJudge
from duelist.models.logprobs import sequence_logprobs
from duelist.online.registry import registry
from duelist.train.learner import make_stats
from duelist.train.run import Run, train


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    p = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    rows = [{"prompt": f"the movie {i} was"} for i in range(12)] + [{"prompt": [{"role": "user", "content": "hi"}]}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def online_args(model, prompts, out, *extra: str) -> list[str]:
    return [
        f"model.name={model}", f"online.prompts={prompts}", "online.judge=intransitive", "online.max_new_tokens=6",
        f"train.output_dir={out}", "train.steps=3", "train.batch_size=4", "optim.lr=1e-3", "optim.warmup=0",
        "train.progress=false", "train.tensorboard=false", "train.threads=1", *extra,
    ]


@pytest.mark.parametrize("name", sorted(registry()))
def test_every_method_runs_rounds_from_config(name, tiny_model_dir, prompts, tmp_path):
    """Three rounds: finite logged values, the round's measurements and timing, a final model."""
    cfg = load_config(None, online_args(tiny_model_dir, prompts, tmp_path / name, f"online.method.name={name}"))
    res = train(cfg)
    assert len(res.history) == 3 and (res.final_dir / "duelist.json").is_file()
    card = json.loads((res.final_dir / "duelist.json").read_text())
    assert card["method"]["name"] == name and card["loss"] == cfg.loss
    for m in res.history:
        assert all(math.isfinite(v) for v in m.values()), m
        for key in ("kl/policy_ref", "judge/win_rate_vs_reference", "time/generate", "time/judge", "time/score",
                    "time/update", "gen/tokens_per_s", "examples/prompts_kept"):
            assert key in m, key
    assert res.history[0]["kl/policy_ref"] == pytest.approx(0.0, abs=1e-5)  # π_0 = π_ref
    if res.history[0].get("examples"):
        assert res.history[0]["log_ratio/mean"] == pytest.approx(0.0, abs=1e-5)  # reference scored as trained


def test_online_dpo_pairs_and_losses_follow_trls_rule(tiny_model_dir, tiny_tokenizer, prompts, tmp_path):
    """K = 2, a reward judge: chosen = the sample with the higher reward (ties to the first), and the loss of
    each pair is −log σ(β[(log π − log π_ref)(y_w) − (log π − log π_ref)(y_l)]), computed here from the two
    models' own scores after one update (so that it is not log 2)."""
    judge = RewardJudge(lambda p, ys: np.array([float(len(y.split()) % 3) for y in ys]), name="words-mod-3")
    cfg = load_config(None, online_args(tiny_model_dir, prompts, tmp_path / "odpo", "online.method.name=online_dpo",
                                        "optim.lr=5e-2"))
    run = Run(cfg, judge=judge)
    run.step(0)
    src, learner = run.source, run.learner
    work = src.work(1, learner)
    draws = src.sampler.draw([learner.model], [1.0], [p.ids for p in _round_prompts(src, 1)], 2, src._seed(1, 0))
    expected = []
    for d in draws:
        r = judge.rewards([""] * 2, [tiny_tokenizer.decode(s.ids, skip_special_tokens=True) for s in d.samples])
        c = 0 if r[0] >= r[1] else 1
        expected.append((d.samples[c].ids, d.samples[1 - c].ids))
    assert [(e.chosen, e.rejected) for e in work.examples] == expected
    ex: list[TokenizedPair] = work.examples
    pad = tiny_tokenizer.pad_token_id
    pol = [sequence_logprobs(m, [e.prompt for e in ex] * 2, [e.chosen for e in ex] + [e.rejected for e in ex], pad)
           for m in (learner.model, src.initial)]
    rho = pol[0] - pol[1]
    b = len(ex)
    want = torch.nn.functional.softplus(-0.1 * (rho[:b] - rho[b:]))
    batch = learner.collate(ex, list(range(b)), pad, learner.layout)
    with torch.no_grad():
        from duelist.models.logprobs import batch_logprobs

        stats = make_stats(batch_logprobs(learner.module, batch), work.reference.logps(batch), batch.extra)
        got = learner.loss(stats).losses.double()
    assert float(want.min()) != pytest.approx(math.log(2), abs=1e-4)  # the policy has moved
    assert torch.allclose(got, want, atol=1e-5)


def _round_prompts(src, step):
    return [src.prompts[i] for i in src.plan.global_batch(step)]


def test_online_runs_refuse_a_whole_run_reference_and_a_loss_section(tiny_model_dir, prompts, tmp_path):
    with pytest.raises(ConfigError, match=r"train\.reference=precompute"):
        Run(load_config(None, online_args(tiny_model_dir, prompts, tmp_path / "a", "train.reference=precompute")))
    with pytest.raises(ConfigError, match=r"online\.method"):
        load_config(None, online_args(tiny_model_dir, prompts, tmp_path / "b", "loss.name=ipo", "loss.beta=0.2"))
    with pytest.raises(ConfigError, match="valid methods: apo, dno, egpo, inpo"):
        load_config(None, online_args(tiny_model_dir, prompts, tmp_path / "c", "online.method.name=spppo"))


def test_the_reference_moves_every_r_rounds(tiny_model_dir, prompts, tmp_path):
    """online_dpo with refresh_every=2: rounds 1–2 score against π_0, round 3 against π_2 (log-ratio 0 at its
    start), and the moved reference is checkpointed."""
    cfg = load_config(None, online_args(tiny_model_dir, prompts, tmp_path / "r", "online.method.refresh_every=2",
                                        "optim.lr=5e-2", "train.steps=3", "train.save_every=2"))
    res = train(cfg)
    assert res.history[0]["log_ratio/mean"] == pytest.approx(0.0, abs=1e-5)
    assert abs(res.history[1]["log_ratio/mean"]) > 1e-3
    assert res.history[2]["log_ratio/mean"] == pytest.approx(0.0, abs=1e-5)
    assert any(k.startswith("reference.") for k in load_file(tmp_path / "r/checkpoints/step-000002/source.safetensors"))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "duelist.cli", "train", *args]


@pytest.mark.parametrize("method", ["sppo", "online_dpo"])
def test_online_resume_after_kill9_equals_uninterrupted(method, tiny_model_dir, prompts, tmp_path):
    """Killed with SIGKILL in the middle of a round, resumed from the last completed round: per-round losses
    and final weights equal an uninterrupted run's (≤ 1e-6; sampling is seeded per round)."""
    args = [*online_args(tiny_model_dir, prompts, "{out}", f"online.method.name={method}", "train.steps=6",
                         "train.save_every=1", "optim.lr=2e-2")]
    env = {**os.environ, "DUELIST_CACHE": str(tmp_path / "cache")}

    def argv(out):
        return [a.replace("{out}", str(out)) for a in args]

    subprocess.run(_cli(*argv(tmp_path / "full")), check=True, env=env, capture_output=True)
    run = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*argv(run)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        m = run / "metrics.jsonl"
        if m.exists() and len(m.read_text().splitlines()) >= 3:
            break
        time.sleep(0.002)
    time.sleep(0.05)  # into the next round
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "final").exists(), "the run finished before it could be killed"
    subprocess.run(_cli(*argv(run), "--resume"), check=True, env=env, capture_output=True)
    full, resumed = read_metrics(tmp_path / "full"), read_metrics(run)
    assert [m["step"] for m in resumed] == list(range(1, 7))
    for key in ("loss", "kl/policy_ref", "judge/win_rate_vs_reference"):
        assert max(abs(a.get(key, 0) - b.get(key, 0)) for a, b in zip(full, resumed, strict=True)) <= 1e-6, key
    wa, wb = load_file(tmp_path / "full/final/model.safetensors"), load_file(run / "final/model.safetensors")
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-6


def _final_weights(run_dir):
    return load_file(run_dir / "checkpoints/step-000003/model.safetensors")


def test_vpo_and_selm_with_no_bonus_are_online_dpo_bit_for_bit(tiny_model_dir, prompts, tmp_path):
    """α = 0: the optimism term adds exactly 0 to every loss and gradient, so three rounds of VPO (SELM) leave
    the same weights, to the bit, as online DPO against the same reference."""
    common = ("optim.lr=5e-2", "online.reference_samples=0")
    runs = {
        "dpo": ("online.method.name=online_dpo",),
        "vpo": ("online.method.name=vpo", "online.method.alpha=0"),
        "selm": ("online.method.name=selm", "online.method.alpha=0", "online.method.beta=0.1"),
    }
    w = {}
    for name, extra in runs.items():
        train(load_config(None, online_args(tiny_model_dir, prompts, tmp_path / name, *common, *extra,
                                            "train.save_final=false")))
        w[name] = _final_weights(tmp_path / name)
    assert all(torch.equal(w["dpo"][k], w["vpo"][k]) for k in w["dpo"])
    # SELM's reference is the previous iterate: with α = 0 it is online DPO with refresh_every = 1
    train(load_config(None, online_args(tiny_model_dir, prompts, tmp_path / "r1", *common,
                                        "online.method.name=online_dpo", "online.method.refresh_every=1",
                                        "train.save_final=false")))
    r1 = _final_weights(tmp_path / "r1")
    assert not all(torch.equal(w["dpo"][k], r1[k]) for k in r1)  # a different method …
    assert all(torch.equal(w["selm"][k], r1[k]) for k in r1)  # … which SELM at α = 0 is, bit for bit


def test_the_optimism_bonus_gradient_is_its_closed_form(tiny_model_dir, tiny_tokenizer, prompts, tmp_path):
    """L_VPO − L_DPO = αβ·½(ρ_w + ρ_l) per pair, so the gradient difference of one update's loss is
    αβ/2 · Σ_i (∇log π(y_w,i) + ∇log π(y_l,i)) / n, computed here from the model's own sequence log-probs."""
    alpha, beta = 0.7, 0.1
    grads = {}
    for a in (alpha, 0.0):
        cfg = load_config(None, online_args(tiny_model_dir, prompts, tmp_path / f"g{a}", "online.method.name=vpo",
                                            f"online.method.alpha={a}", "online.reference_samples=0"))
        run = Run(cfg)
        work = run.source.work(0, run.learner)
        run.learner.module.zero_grad()
        run.learner.accumulate(work.examples, work.updates[0], work.reference)
        grads[a] = {n: p.grad.clone() for n, p in run.learner.model.named_parameters()}
        ex, model = work.examples, run.learner.model
    model.zero_grad()
    responses = [e.chosen for e in ex] + [e.rejected for e in ex]
    lp = sequence_logprobs.__wrapped__(model, [e.prompt for e in ex] * 2, responses, tiny_tokenizer.pad_token_id)
    (alpha * beta * 0.5 * lp.sum() / len(ex)).backward()
    for n, p in model.named_parameters():
        assert torch.allclose(grads[alpha][n] - grads[0.0][n], p.grad, atol=1e-7, rtol=1e-4), n
