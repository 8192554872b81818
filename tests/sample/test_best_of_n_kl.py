"""Best-of-N: the exact law and KL on discrete distributions against log N − (N−1)/N, and sampling."""

import itertools

import numpy as np
import pytest
from conftest import make_model

from duelist.judges import MajorityJudge, RewardJudge
from duelist.sample.best_of_n import best_of_n, bon_distribution, bon_kl, bon_kl_bound, bon_winrate

NS = (2, 4, 16)


@pytest.mark.parametrize("n", NS)
def test_bon_kl_never_exceeds_the_bound(n):
    """200 random discrete π_ref (2–50 atoms, Dirichlet masses) with distinct random rewards: the exact
    KL Σ_k w_k log(w_k/p_k), w_k = F_k^N − F_{k−1}^N, is ≤ log N − (N−1)/N (the continuous value; a discrete
    law is a coarse-graining of it, and coarse-graining cannot raise KL). The law sums to 1 and is a
    brute-force match of 'max of N draws' for a small case."""
    rng = np.random.default_rng(n)
    bound = bon_kl_bound(n)
    assert bound == pytest.approx(np.log(n) - (n - 1) / n)
    for _ in range(200):
        k = int(rng.integers(2, 51))
        p = rng.dirichlet(np.full(k, rng.uniform(0.2, 3)))
        r = rng.permutation(k).astype(float)
        d = bon_distribution(p, r, n)
        assert d.sum() == pytest.approx(1.0)
        kl = bon_kl(p, r, n)
        assert kl == pytest.approx(np.sum(d[d > 0] * np.log(d[d > 0] / p[d > 0])))
        assert 0 <= kl <= bound + 1e-12
    # brute force: 3 atoms, N = 2 → enumerate all 9 ordered draws
    p, r = np.array([0.5, 0.3, 0.2]), np.array([2.0, 0.0, 1.0])
    want = np.zeros(3)
    for i in range(3):
        for j in range(3):
            want[i if r[i] >= r[j] else j] += p[i] * p[j]
    assert bon_distribution(p, r, 2) == pytest.approx(want)


@pytest.mark.parametrize("n", NS)
def test_bon_kl_approaches_the_bound_in_the_continuous_limit(n):
    """Uniform π_ref on K atoms with distinct rewards: the gap to the bound shrinks monotonically as
    K = 2 … 10⁴ (each atom's mass 1/K → 0) and is < 10⁻⁴ at K = 10⁴. The win-rate over π_ref tends to
    N/(N+1) the same way."""
    gaps = []
    for k in (2, 10, 100, 1000, 10000):
        p, r = np.full(k, 1.0 / k), np.arange(k, dtype=float)
        gaps.append(bon_kl_bound(n) - bon_kl(p, r, n))
    assert all(g >= 0 for g in gaps)
    assert all(b < a for a, b in itertools.pairwise(gaps))
    assert gaps[-1] < 1e-4
    assert bon_winrate(np.full(10000, 1e-4), np.arange(10000.0), n) == pytest.approx(n / (n + 1), abs=1e-4)


def test_ties_are_grouped_and_kl_falls():
    """Equal rewards form one class: BoN is uniform over an all-tied support (KL 0), and merging two atoms
    into one reward class lowers the KL (log-sum inequality)."""
    p = np.array([0.25, 0.25, 0.25, 0.25])
    assert bon_kl(p, np.zeros(4), 8) == pytest.approx(0.0)
    assert bon_distribution(p, np.zeros(4), 8) == pytest.approx(p)
    assert bon_kl(p, np.array([0, 1, 1, 2.0]), 4) < bon_kl(p, np.array([0, 1, 2, 3.0]), 4)


def test_best_of_n_sampling_keeps_the_judges_best(tiny_tokenizer):
    """Sampling N = 4 from a tiny model: the kept candidate has the maximal reward among the 4; with a
    non-reward judge the kept one has the best mean preference against the others. The reported bound is
    log 4 − 3/4 and the plug-in KL (exact BoN KL on each prompt's 4 candidates) lies in [0, bound]."""
    model = make_model(len(tiny_tokenizer), seed=3)
    prompts = ["the movie was", "a terrible film"]
    judge = RewardJudge(lambda p, r: np.array([len(t) for t in r], dtype=float), name="length")
    res = best_of_n(model, tiny_tokenizer, prompts, judge, n=4, max_new_tokens=8, batch_size=8, seed=1)
    assert res.kl_bound == pytest.approx(np.log(4) - 0.75)
    assert 0 <= res.kl_plugin <= res.kl_bound + 1e-12
    for kept, cands in zip(res.chosen, res.candidates, strict=True):
        assert len(cands) == 4 and len(kept.text) == max(len(c.text) for c in cands)
    res2 = best_of_n(model, tiny_tokenizer, prompts, MajorityJudge(), n=3, max_new_tokens=8, batch_size=8, seed=1)
    for kept, cands, s in zip(res2.chosen, res2.candidates, res2.scores, strict=True):
        m = MajorityJudge().matrix("", [c.text for c in cands]).mean(1)
        assert s == pytest.approx(m) and kept is cands[int(np.argmax(m))]
