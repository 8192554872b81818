"""Judges: closed forms of the noise wrapper, the LSC transform, majority votes and populations."""

import numpy as np
import pytest

from duelist.judges import (
    JUDGES,
    Group,
    LSCRewardJudge,
    MajorityJudge,
    NoisyJudge,
    PopulationJudge,
    RewardJudge,
    get_judge,
    lsc_combine,
    lsc_transform,
    reference_reward,
)
from duelist.judges.analysis import bt_vs_judge, cycle_fraction, fit_bradley_terry, is_cycle
from duelist.judges.criteria import CRITERIA, Criterion


def length_reward(prompts, responses):
    return np.array([len(r) for r in responses], dtype=float)


def test_registry_builds_every_judge():
    assert {"lexicon", "intransitive", "population", "noisy"} <= set(JUDGES)
    for name in ("lexicon", "intransitive", "population"):
        j = get_judge(name)
        p = j.prob(["x", "x"], ["I love this wonderful film", "dull"], ["dull", "I love this wonderful film"])
        assert np.allclose(p[0] + p[1], 1.0)  # P(a≻b) + P(b≻a) = 1 by swapping the pair
    with pytest.raises(ValueError, match="valid judges"):
        get_judge("nope")


def test_noisy_judge_closed_form():
    """P' = (1 − ε)P + ε(1 − P): for P ∈ {0, ½, 1, 0.7} and ε = 0.2 → {0.2, ½, 0.8, 0.62}; sampled labels
    match P' (binomial 4σ)."""
    base = RewardJudge(lambda p, r: np.array([float(x) for x in r]), temperature=0)
    noisy = NoisyJudge(base, 0.2)
    p = noisy.prob(["x"] * 3, ["0", "1", "2"], ["1", "1", "1"])
    assert p == pytest.approx([0.2, 0.5, 0.8])
    soft = RewardJudge(lambda p, r: np.array([float(x) for x in r]), temperature=1.0)
    p_soft = soft.prob(["x"], ["1"], ["0"])[0]  # σ(1)
    assert NoisyJudge(soft, 0.2).prob(["x"], ["1"], ["0"])[0] == pytest.approx(0.8 * p_soft + 0.2 * (1 - p_soft))
    n = 20000
    labels = noisy.labels(["x"] * n, ["2"] * n, ["1"] * n, rng=0)
    assert abs(labels.mean() - 0.8) < 4 * np.sqrt(0.16 / n)
    assert get_judge("noisy", base="lexicon", epsilon=0.5).prob(["x"], ["great"], ["awful"])[0] == 0.5
    with pytest.raises(ValueError):
        NoisyJudge(base, 0.7)


def test_reward_judge_temperature():
    """BT: P = σ(Δr/T); T = 0 is the hard comparison with ties ½."""
    j = RewardJudge(length_reward, temperature=2.0)
    assert j.prob(["x"], ["abcd"], ["ab"])[0] == pytest.approx(1 / (1 + np.exp(-1.0)))
    assert list(RewardJudge(length_reward).prob(["x"] * 3, ["ab", "a", "ab"], ["a", "ab", "cd"])) == [1, 0, 0.5]


def test_lsc_transform_properties():
    """u = log σ(r − r_ref): u < 0; u(r_ref) = −log 2; u → 0 as r → ∞; u − (r − r_ref) → 0 as r → −∞
    (log σ(z) = z − log(1 + e^z)); Σ_i u_i = log Π σ(r_i − r_i^ref)."""
    r = np.linspace(-30, 30, 121)
    u = lsc_transform(r, 1.5)
    assert np.all(u < 0)
    assert lsc_transform(1.5, 1.5) == pytest.approx(-np.log(2))
    assert lsc_transform(1e3, 0.0) == pytest.approx(0.0, abs=1e-12)
    assert lsc_transform(-40.0, 0.0) - (-40.0) == pytest.approx(0.0, abs=1e-15)
    assert lsc_transform(-1e4, 0.0) == pytest.approx(-1e4)  # no overflow
    assert np.all(np.diff(u) > 0)
    r1, r2 = np.array([0.3, -2.0, 4.0]), np.array([1.0, 0.5, -1.0])
    total = lsc_combine([r1, r2], [0.1, np.array([0.0, 1.0, 2.0])])
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    assert total == pytest.approx(np.log(sig(r1 - 0.1) * sig(r2 - np.array([0.0, 1.0, 2.0]))))


def test_lsc_reward_judge_and_reference_quantile():
    """The LSC judge ranks by Σ log σ(r_i − r_i^ref(x)); r_ref from base samples is their quantile."""
    assert reference_reward(np.array([1.0, 2.0, 3.0, 4.0]), 0.5) == 2.5
    r_len = length_reward
    r_excl = lambda p, r: np.array([t.count("!") for t in r], dtype=float)  # noqa: E731
    j = LSCRewardJudge([r_len, r_excl], {"x": (3.0, 0.0)})
    got = j.rewards(["x", "x"], ["abc", "ab!!"])
    assert got == pytest.approx([lsc_transform(3, 3) + lsc_transform(0, 0), lsc_transform(4, 3) + lsc_transform(2, 0)])
    assert j.prob(["x"], ["ab!!"], ["abc"])[0] == 1.0
    const = LSCRewardJudge([r_len], (2.0,))
    assert const.rewards(["any"], ["abcd"])[0] == pytest.approx(lsc_transform(4.0, 2.0))


def _crit(name, values):
    """A criterion reading numbers from the text "v0,v1,v2"."""
    return Criterion(name, lambda texts: np.array([float(t.split(",")[values]) for t in texts]), 1.0, name)


def test_majority_judge_makes_a_condorcet_cycle():
    """Three criteria ranking a, b, c in the cyclic shifts (a b c), (b c a), (c a b): each pair is won
    2 votes to 1 round the cycle, so a ≻ b ≻ c ≻ a; a BT fit can do no better than log 2 per pair on it."""
    crits = [_crit(f"c{k}", k) for k in range(3)]
    j = MajorityJudge(crits)
    a, b, c = "3,2,1", "2,1,3", "1,3,2"
    assert j.prob(["x"] * 3, [a, b, c], [b, c, a]) == pytest.approx([1, 1, 1])
    frac, n = cycle_fraction(j, ["x"], [(a, b, c)])
    assert (frac, n) == (1.0, 1)
    s = fit_bradley_terry(3, np.array([0, 1, 2]), np.array([1, 2, 0]), np.ones(3), l2=0.0)
    assert np.allclose(s, 0, atol=1e-6)  # the balanced 3-cycle: every BT prob is ½, loss log 2 per pair
    soft = MajorityJudge(crits, temperature=1.0)
    assert soft.prob(["x"], [a], [b])[0] == pytest.approx(1 / (1 + np.exp(-1)))  # margin 2 − 1 = 1
    tol = MajorityJudge(crits, tolerances=[5, 0, 0])  # criterion 0 always ties → votes 1–1 on (a, b)
    assert tol.prob(["x"], [a], [b])[0] == 0.5
    with pytest.raises(ValueError):
        MajorityJudge(crits[:2])


def test_tradeoff_raters_sum_to_zero_and_are_never_unanimous():
    """fan + editor + critic = (s − b) + (b − v) + (v − s) = 0 for every response, so for any pair the three
    score differences sum to 0: the votes are never 3–0 (two differences of one sign, one of the other,
    or ties)."""
    texts = ["I love it!", "a dull, dull, dull film", "Quietly brilliant and strange", "ok", "no"]
    j = MajorityJudge()
    s = j.scores(texts)
    assert np.allclose(s.sum(1), 0)
    ii, jj = np.triu_indices(len(texts), 1)
    votes = j.votes_from_scores(s[ii], s[jj])
    assert np.all(np.abs(votes.sum(1)) < 3)


def test_is_cycle_needs_strict_verdicts():
    assert list(is_cycle(np.array([1, 0, 1, 0.5]), np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1]))) == [
        True,
        True,
        False,
        False,
    ]


def test_population_judge_groups_and_aggregate():
    """Aggregate = Σ share_g P_g; per-group P_g = σ(Δr_g/τ_g) with r_g = Σ_k w_gk c_k / scale_k.
    Two hard groups with opposite tastes and shares 0.7 / 0.3 give P = 0.7; the worst-off group gets 0."""
    pop = PopulationJudge(
        [
            Group("long", {"detail": 1.0}, share=0.7, temperature=0),
            Group("short", {"brevity": 1.0}, share=0.3, temperature=0),
        ]
    )
    a, b = "one two three four five six", "one"
    gp = pop.group_probs(["x"], [a], [b])
    assert gp[:, 0] == pytest.approx([1.0, 0.0])
    assert pop.prob(["x"], [a], [b])[0] == pytest.approx(0.7)
    rep = pop.report(["x"], [a], [b])
    assert rep == pytest.approx({"long": 1.0, "short": 0.0, "aggregate": 0.7, "min_group": 0.0})
    soft = PopulationJudge([Group("s", {"detail": 2.0}, temperature=0.5)])
    # detail: 6 vs 1 distinct words, scale s → Δr = 2·(6 − 1)/s; P = σ(Δr/0.5)
    dr = 2 * 5 / CRITERIA["detail"].scale
    assert soft.prob(["x"], [a], [b])[0] == pytest.approx(1 / (1 + np.exp(-dr / 0.5)))
    assert get_judge("population", groups=[{"name": "g", "weights": {"sentiment": 1}}]).group_names == ["g"]


def test_bt_fit_recovers_scores_and_beats_nothing_on_transitive_judge():
    """Control: on a transitive judge (a reward through BT), the fitted BT loses to the judge only the
    estimation cost of its n_items parameters, ≈ n_items / (2 n_train) nats per held-out label
    (asymptotic excess log-loss of a d-parameter MLE), so the gap the intransitive test reports is not an
    artefact of the fitting procedure. Bound used: n_items / n_train + 3 s.e."""
    rng = np.random.default_rng(0)
    texts = [str(v) for v in rng.normal(size=150)]
    j = RewardJudge(lambda p, r: np.array([float(t) for t in r]), temperature=0.5)
    rep = bt_vs_judge(j, ["x"] * len(texts), texts, epsilon=0.0, seed=1)
    assert abs(rep.judge_accuracy - rep.bt_accuracy) < 3 * rep.accuracy_diff_se + 0.01
    assert rep.judge_loglik - rep.bt_loglik < rep.n_items / rep.n_train + 3 * rep.loglik_diff_se
