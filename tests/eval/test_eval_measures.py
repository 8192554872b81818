"""Evaluation measures on tiny models: KL of a model against itself, implicit-reward accuracy, the
reward–KL frontier, log-prob trajectories and the linear probe."""

import json

import numpy as np
import pytest
import torch
from conftest import make_model, standard_rows, write_jsonl

from duelist.data.formats import validate
from duelist.data.sources import read_records
from duelist.eval.accuracy import accuracy_from_margins, implicit_reward_accuracy
from duelist.eval.diagnostics import (
    linear_probe,
    plot_trajectories,
    response_features,
    trajectories,
    trajectory_summary,
)
from duelist.eval.frontier import FrontierPoint, plot_frontier, reward_kl_point
from duelist.eval.kl import kl_from_samples
from duelist.eval.run import score
from duelist.eval.stats import mean_interval
from duelist.judges import RewardJudge
from duelist.sample.generate import sample


def test_kl_of_a_tiny_model_against_itself_is_zero_within_its_error(tiny_tokenizer):
    """Samples of a tiny random model scored by the same model: log π − log π_ref is 0 per sample up to
    float error (the recorded sampling log-prob vs a fresh forward pass), so the estimate is 0 ± its s.e."""
    model = make_model(len(tiny_tokenizer), seed=7)
    prompts = [[1, 10 + i, 11, 12] for i in range(10)]
    comps = sample(model, tiny_tokenizer, prompts, n=3, max_new_tokens=8, batch_size=30, seed=2)
    groups = np.array([c.prompt_index for c in comps])
    lp = np.array([c.logprob for c in comps])
    e = kl_from_samples(lp, score(model, comps, 0, 30), groups)
    assert abs(e.mean) <= max(3 * e.se, 1e-4)
    assert abs(e.mean) < 1e-4 and e.n == 10


def test_accuracy_ties_count_half():
    """Margins (+, −, 0, +): accuracy (1 + 0 + ½ + 1)/4; all-zero margins (the reference) give exactly ½."""
    assert accuracy_from_margins(np.array([0.2, -1.0, 0.0, 3.0])).mean == pytest.approx(0.625)
    e = accuracy_from_margins(np.zeros(50))
    assert e.mean == 0.5


def test_implicit_reward_accuracy_reference_is_half_and_margins_match(tiny_tokenizer, tmp_path):
    """The reference against itself: every margin is exactly 0 → accuracy exactly 0.5. Against another
    model the margins equal β((log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))) computed pair
    by pair with unbatched forward passes (batching and padding do not change them)."""
    from duelist.data.tokenize import PairTokenizer
    from duelist.models.logprobs import sequence_logprobs

    ref = make_model(len(tiny_tokenizer), seed=1)
    ex = validate(read_records(str(write_jsonl(tmp_path / "d.jsonl", standard_rows(12))))).examples
    res = implicit_reward_accuracy(ref, ref, tiny_tokenizer, ex, beta=0.1, max_length=64, max_prompt_length=32)
    assert res.accuracy.mean == 0.5 and np.all(res.margins == 0) and res.pairs == 12
    pol = make_model(len(tiny_tokenizer), seed=2)
    res2 = implicit_reward_accuracy(pol, ref, tiny_tokenizer, ex, beta=0.5, max_length=64, max_prompt_length=32)
    enc = PairTokenizer(tiny_tokenizer, 64, 32)

    def lp(m, prompt, resp):
        with torch.no_grad():
            return float(sequence_logprobs(m, [prompt], [resp], 0)[0])

    for k, e in enumerate(ex[:4]):
        tp = enc(e)
        want = 0.5 * (
            (lp(pol, tp.prompt, tp.chosen) - lp(ref, tp.prompt, tp.chosen))
            - (lp(pol, tp.prompt, tp.rejected) - lp(ref, tp.prompt, tp.rejected))
        )
        assert res2.margins[k] == pytest.approx(want, abs=1e-4)
    assert res2.accuracy.mean == pytest.approx(np.mean(res2.margins > 0) + 0.5 * np.mean(res2.margins == 0))


def test_reward_kl_point_and_frontier_plot(tiny_tokenizer, tmp_path):
    """The reference's own point has KL exactly 0; a different policy's KL is > 0; the PNG is written."""
    ref = make_model(len(tiny_tokenizer), seed=1)
    pol = make_model(len(tiny_tokenizer), seed=2)
    ids = [[1, 10 + i] for i in range(6)]
    texts = [f"p{i}" for i in range(6)]
    judge = RewardJudge(lambda p, r: np.array([len(t) for t in r], dtype=float), name="length")
    kw = dict(samples_per_prompt=2, max_new_tokens=6, batch_size=12, seed=0)
    p0 = reward_kl_point("reference", ref, ref, tiny_tokenizer, ids, texts, judge, **kw)
    p1 = reward_kl_point("policy", pol, ref, tiny_tokenizer, ids, texts, judge, **kw)
    assert p0.kl.mean == 0.0 and p1.kl.mean > 0
    plot_frontier([p0, p1], tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 1000
    assert FrontierPoint("x", mean_interval(np.ones(3)), mean_interval(np.zeros(3))).as_dict()["label"] == "x"


def test_trajectories_and_summary(tmp_path):
    """A synthetic run where rejected falls by 10 and chosen by 2: the summary reports both changes and the
    displacement of chosen (it fell), averaging the first/last 3 steps."""
    rows = [
        {"step": s, "loss": 0.5, "logps/chosen": -50.0 - 2 * s / 9, "logps/rejected": -60.0 - 10 * s / 9}
        for s in range(10)
    ]
    f = tmp_path / "metrics.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tr = trajectories(f)
    s = trajectory_summary(tr, window=1)
    assert s["chosen_change"] == pytest.approx(-2.0) and s["rejected_change"] == pytest.approx(-10.0)
    assert s["chosen_displaced"] and s["margin_change"] == pytest.approx(8.0)
    plot_trajectories(tr, tmp_path / "t.png")
    assert (tmp_path / "t.png").is_file()


def test_linear_probe_separable_and_inseparable():
    """Gaussian features: chosen shifted by 1.5 along a fixed direction → held-out accuracy near Φ(0.75)≈0.77
    or better; identical distributions → accuracy within its interval of ½."""
    rng = np.random.default_rng(0)
    n, d = 400, 16
    shift = np.zeros(d)
    shift[0] = 3.0
    sep = linear_probe(rng.normal(size=(n, d)) + shift, rng.normal(size=(n, d)))
    assert sep.accuracy.mean > 0.85
    same = linear_probe(rng.normal(size=(n, d)), rng.normal(size=(n, d)))
    assert same.accuracy.lo < 0.5 < same.accuracy.hi


def test_response_features_shape(tiny_tokenizer):
    """One last-layer hidden state per sequence, read at its last real token (right padding ignored)."""
    model = make_model(len(tiny_tokenizer), seed=0)
    f = response_features(model, [[1, 5], [1, 6, 7, 8]], [[9], [10, 11]], batch_size=2)
    assert f.shape == (2, 32)
    alone = response_features(model, [[1, 5]], [[9]])
    assert np.allclose(f[0], alone[0], atol=1e-5)


def test_win_rate_of_a_over_b_under_any_judge():
    """Per prompt, the K_a × K_b comparisons are averaged (ties ½); a always longer → 1 (Wilson interval on
    0/1 outcomes); one prompt with a tie-half → t-interval on per-prompt means."""
    from duelist.eval.winrate import win_rate

    judge = RewardJudge(lambda p, r: np.array([len(t) for t in r], dtype=float), name="length")
    est, per = win_rate(judge, ["x", "y"], [["aaa", "aaaa"], ["bbb"]], [["a", "aa"], ["b", "bb"]])
    assert list(per) == [1.0, 1.0] and est.mean == 1.0 and est.lo == pytest.approx(0.342, abs=1e-3)
    est2, per2 = win_rate(judge, ["x", "y", "z"], [["aa"], ["b"], ["ccc"]], [["aa", "a"], ["bb"], ["c"]])
    assert list(per2) == [0.75, 0.0, 1.0] and est2.mean == pytest.approx(1.75 / 3)
    assert est2.lo == max(0.0, mean_interval(per2).lo)


def test_frontier_loads_run_checkpoints(tiny_model_dir, tmp_path):
    """A 2-step tiny run saving every step: ``checkpoints_of`` lists step-1, step-2, final; the policy rebuilt
    from step-2 (base model + saved weights) has exactly the final model's weights."""
    from helpers import tiny_config

    from duelist.eval.frontier import checkpoints_of, load_policy
    from duelist.train.run import train

    data = write_jsonl(tmp_path / "pairs.jsonl", standard_rows(16))
    run = tmp_path / "run"
    train(tiny_config(tiny_model_dir, data, run, "train.steps=2", "train.save_every=1", "train.keep_checkpoints=5"))
    cps = checkpoints_of(run)
    assert [p.name for p in cps] == ["step-000001", "step-000002", "final"]
    a, b = load_policy(cps[1]).state_dict(), load_policy(cps[2]).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)
    c = load_policy(cps[0]).state_dict()
    assert any(not torch.equal(c[k], b[k]) for k in b)
