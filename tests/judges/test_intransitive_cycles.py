"""The intransitive judge on real samples of the default model (the shipped fixture of 200 triples).

The fixture ``intransitive-review:samples`` holds 3 samples (24 new tokens, temperature 1, seed 0) of
SmolLM2-135M-Instruct for each of positive-review's first 200 test prompts; regenerate it with
``duelist tasks build intransitive-review`` (the test never samples).
"""

import json

import numpy as np
import pytest

from duelist.data import tasks
from duelist.judges import MajorityJudge, get_judge
from duelist.judges.analysis import bt_vs_judge, cycle_fraction


def _fixture():
    rows = [json.loads(l) for l in tasks.data_file("intransitive-review:samples").read_text().splitlines()]
    prompts = [r["prompt"][-1]["content"] for r in rows]
    return rows, prompts, [r["samples"] for r in rows]


def test_fixture_is_200_triples_of_distinct_samples():
    rows, _, triples = _fixture()
    assert len(rows) == 200 and all(len(t) == 3 for t in triples)
    assert sum(len(set(t)) == 3 for t in triples) >= 195


def test_at_least_ten_percent_of_real_triples_are_condorcet_cycles():
    """Majority of the fan / editor / critic raters (trade-offs of sentiment, brevity and lexical variety)
    over each prompt's 3 samples: a triple is a cycle when a ≻ b ≻ c ≻ a or the reverse. Independent uniform
    rankings would give 1/18 ≈ 5.6%; acceptance is ≥ 10%; observed 37/200 = 18.5% (the plain
    sentiment/brevity/variety majority: 4/200)."""
    _, prompts, triples = _fixture()
    frac, n = cycle_fraction(get_judge("intransitive"), prompts, triples)
    assert frac >= 0.10, (frac, n)
    assert n == 37
    assert cycle_fraction(MajorityJudge(("sentiment", "brevity", "variety")), prompts, triples)[1] == 4


def test_bradley_terry_fit_is_worse_than_the_judge_on_held_out_labels():
    """Pool of the 600 samples (the criteria ignore the prompt, so any two samples can be compared); labels
    from the judge through label noise ε = 0.1; BT scores (one per sample, l2 chosen on validation) fitted on a
    random half of 60,000 pairs; held-out: the other half. The judge is the data-generating process; BT can
    only represent transitive preferences, so it loses accuracy and log-likelihood on the cyclic part. The
    gap must exceed 3 paired standard errors, and for log-likelihood also BT's estimation cost
    ≈ n_items / (2 n_train) (bounded by n_items / n_train; the transitive control is in test_judges_core).
    Observed: accuracy 0.897 (judge) vs 0.598 (BT), log-likelihood −0.327 vs −0.668 nats, paired s.e. ≈ 0.004."""
    _, prompts, triples = _fixture()
    texts = [s for t in triples for s in t]
    pool_prompts = [p for p in prompts for _ in range(3)]
    rep = bt_vs_judge(MajorityJudge(), pool_prompts, texts, epsilon=0.1, max_pairs=60000, seed=0)
    assert rep.n_test == 30000
    assert rep.judge_accuracy - rep.bt_accuracy > 3 * rep.accuracy_diff_se
    assert rep.judge_loglik - rep.bt_loglik > 3 * rep.loglik_diff_se + rep.n_items / rep.n_train
    assert np.isfinite(rep.bt_loglik)
    assert rep.judge_accuracy == pytest.approx(0.897, abs=0.002) and rep.bt_accuracy == pytest.approx(0.598, abs=0.002)
