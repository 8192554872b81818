"""Judged samples → examples: each builder against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest

from duelist.sample.pairing import JudgedGroup, all_pairs, best_vs_worst, samples, self_play_weights


def group(P, mass=None, rewards=None) -> JudgedGroup:
    P = np.asarray(P, dtype=float)
    k = len(P)
    m = None if mass is None else np.asarray(mass, dtype=float)
    return JudgedGroup([9], [[i] for i in range(k)], P, self_play_weights(k, m),
                       np.ones(k) if m is None else m, rewards)


# a 3-cycle with a tie: r = mean over the 2 others: r0 = (0.9 + 0.1)/2 = 0.5, r1 = (0.1 + 0.9)/2 = 0.5, r2 = 0.5
CYCLE = [[0.5, 0.9, 0.1], [0.1, 0.5, 0.9], [0.9, 0.1, 0.5]]
# a transitive order 0 ≻ 1 ≻ 2 ≻ 3 with P = 0.8 between neighbours, 1 otherwise
ORDER = [[0.5, 0.8, 1, 1], [0.2, 0.5, 0.8, 1], [0, 0.2, 0.5, 0.8], [0, 0, 0.2, 0.5]]


def test_win_rates_use_the_other_samples():
    g = group(ORDER)
    # r_i = Σ_{j≠i} P_ij / 3
    assert g.win_rates.tolist() == pytest.approx([2.8 / 3, 2.0 / 3, 1.0 / 3, 0.2 / 3])
    assert group(CYCLE).win_rates.tolist() == pytest.approx([0.5, 0.5, 0.5])
    assert g.win_rates.sum() == pytest.approx(4 / 2)  # self-play win-rates sum to K/2


def test_best_vs_worst_is_trls_rule_at_two_samples():
    """K = 2, reward judge with temperature 0: P_01 = 1, ½ or 0. Chosen = the higher score, ties to the first."""
    for p01, chosen in ((1.0, 0), (0.5, 0), (0.0, 1)):
        (pair,) = best_vs_worst(group([[0.5, p01], [1 - p01, 0.5]]))
        assert pair.chosen == [chosen] and pair.rejected == [1 - chosen]
        assert pair.extra["label"] == 1.0 and pair.extra["weight"] == 1.0


def test_best_vs_worst_of_k_and_the_margin_filter():
    (pair,) = best_vs_worst(group(ORDER))
    assert (pair.chosen, pair.rejected) == ([0], [3])
    assert pair.extra["p_win"] == pytest.approx(2.8 / 3) and pair.extra["p_lose"] == pytest.approx(0.2 / 3)
    assert len(best_vs_worst(group(ORDER), margin=0.86)) == 1  # gap 2.6/3 = 0.867 ≥ 0.86 is kept …
    assert best_vs_worst(group(ORDER), margin=0.87) == []  # … and dropped just above it
    (tie,) = best_vs_worst(group(CYCLE))  # all tied: the first is chosen, the last rejected
    assert (tie.chosen, tie.rejected) == ([0], [2])


def test_all_pairs_carry_soft_labels_and_exact_weights():
    mass = [0.5, 0.3, 0.2]
    pairs = all_pairs(group(CYCLE, mass))
    assert [(p.chosen[0], p.rejected[0]) for p in pairs] == [(0, 1), (0, 2), (1, 2)]
    assert [p.extra["label"] for p in pairs] == [0.9, 0.1, 0.9]
    assert [p.extra["weight"] for p in pairs] == pytest.approx([0.15, 0.1, 0.06])
    # exact win-rates against the mass (own term included): r = P·mass
    assert pairs[0].extra["p_win"] == pytest.approx(0.5 * 0.5 + 0.9 * 0.3 + 0.1 * 0.2)


def test_single_samples_carry_win_rate_and_advantage():
    ex = samples(group(ORDER))
    r = np.array([2.8, 2.0, 1.0, 0.2]) / 3
    assert [e.extra["win_rate"] for e in ex] == pytest.approx(r.tolist())
    assert [e.extra["advantage"] for e in ex] == pytest.approx((r - 0.5).tolist())  # baseline ½ in self-play
    exact = samples(group(CYCLE, [0.5, 0.3, 0.2]))
    r = np.array(CYCLE) @ np.array([0.5, 0.3, 0.2])
    assert [e.extra["advantage"] for e in exact] == pytest.approx((r - 0.5).tolist())  # E_π P(y ≻ π) = ½
    assert [e.extra["weight"] for e in exact] == [0.5, 0.3, 0.2]
