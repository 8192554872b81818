"""Is a judge transitive? Condorcet cycles on triples, and a Bradley–Terry fit to its labels.

* ``is_cycle`` / ``cycle_fraction``: a triple (a, b, c) is a Condorcet cycle when the three pairwise
  verdicts all point the same way round: a ≻ b, b ≻ c, c ≻ a or the reverse (each P strictly ≠ ½).
* ``fit_bradley_terry``: per-item scores s maximising Σ_pairs [y log σ(s_i − s_j) + (1 − y) log σ(s_j − s_i)]
  − (l2/2)‖s‖² (labels y ∈ [0, 1], ½ for a tie), by L-BFGS on the exact gradient. BT is the best a
  scalar reward can do; on a balanced 3-cycle its best loss is log 2 per pair.
* ``bt_vs_judge``: a fair held-out comparison. Items are a pool of responses; all pairs among them are
  split at random into training and held-out pairs; labels are drawn from the judge (optionally through
  label noise ε, as ``NoisyJudge``: P' = (1 − ε)P + ε(1 − P)); BT scores are fitted on the training
  labels (l2 chosen on a validation
  part of the training pairs), and both BT's P and the judge's own P predict the held-out labels.
  The judge is the data-generating process, so it is the Bayes-optimal predictor; the question is how
  much a transitive model loses. Reported: accuracy (ties ½) and mean log-likelihood of both, with the
  paired difference's standard error over held-out pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from duelist.judges.base import Judge


def is_cycle(p_ab: np.ndarray, p_bc: np.ndarray, p_ca: np.ndarray) -> np.ndarray:
    """Elementwise: True where a ≻ b ≻ c ≻ a or a ≺ b ≺ c ≺ a (strict, i.e. each P ≠ ½)."""
    s = [np.sign(np.asarray(p, float) - 0.5) for p in (p_ab, p_bc, p_ca)]
    return (s[0] != 0) & (s[0] == s[1]) & (s[1] == s[2])


def triple_probs(judge: Judge, prompts: Sequence[str], triples: Sequence[Sequence[str]]) -> np.ndarray:
    """[n, 3] P(a≻b), P(b≻c), P(c≻a) for each triple (a, b, c)."""
    a = [t[0] for t in triples]
    b = [t[1] for t in triples]
    c = [t[2] for t in triples]
    pr = list(prompts)
    return np.stack([judge.prob(pr, a, b), judge.prob(pr, b, c), judge.prob(pr, c, a)], axis=1)


def cycle_fraction(judge: Judge, prompts: Sequence[str], triples: Sequence[Sequence[str]]) -> tuple[float, int]:
    """(fraction of triples that are Condorcet cycles, their number)."""
    p = triple_probs(judge, prompts, triples)
    cyc = is_cycle(p[:, 0], p[:, 1], p[:, 2])
    return float(cyc.mean()), int(cyc.sum())


def _bt_objective(s: np.ndarray, i: np.ndarray, j: np.ndarray, y: np.ndarray, l2: float):
    d = s[i] - s[j]
    nll = -(y * log_expit(d) + (1 - y) * log_expit(-d)).sum() + 0.5 * l2 * (s @ s)
    g_d = expit(d) - y  # d(nll)/dd
    grad = np.bincount(i, g_d, len(s)) - np.bincount(j, g_d, len(s)) + l2 * s
    return nll, grad


def fit_bradley_terry(n_items: int, i: np.ndarray, j: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    """BT scores for ``n_items`` from comparisons (i[k], j[k]) with label y[k] = P̂(i ≻ j) ∈ [0, 1]."""
    i, j, y = np.asarray(i), np.asarray(j), np.asarray(y, dtype=np.float64)
    res = minimize(_bt_objective, np.zeros(n_items), args=(i, j, y, l2), jac=True, method="L-BFGS-B")
    return res.x - res.x.mean()


def _loglik(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return y * np.log(p) + (1 - y) * np.log(1 - p)


def _accuracy(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """1 when the prediction (P > ½) matches the label, ½ when the prediction is exactly ½."""
    return np.where(p == 0.5, 0.5, ((p > 0.5) == (y > 0.5)).astype(float))


@dataclass
class TransitivityReport:
    n_items: int
    n_train: int
    n_test: int
    epsilon: float
    l2: float
    judge_accuracy: float
    bt_accuracy: float
    accuracy_diff_se: float
    judge_loglik: float
    bt_loglik: float
    loglik_diff_se: float

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def bt_vs_judge(
    judge: Judge,
    prompts: Sequence[str],
    responses: Sequence[str],
    epsilon: float = 0.1,
    train_fraction: float = 0.5,
    l2_grid: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0),
    max_pairs: int | None = None,
    seed: int = 0,
) -> TransitivityReport:
    """Fit BT to labels of ``judge`` (through label noise ε) on a random half of all pairs of the pool
    (``prompts[k]`` is the prompt of ``responses[k]``; pairs use the first item's prompt, which is
    only sound for prompt-independent judges such as the criteria judges) and compare held-out
    predictions of BT and of the judge itself."""
    rng = np.random.default_rng(seed)
    n = len(responses)
    ii, jj = np.triu_indices(n, 1)
    order = rng.permutation(len(ii))
    if max_pairs is not None:
        order = order[:max_pairs]
    ii, jj = ii[order], jj[order]
    flip = rng.random(len(ii)) < 0.5  # random orientation, so the label is not always "first index"
    ii, jj = np.where(flip, jj, ii), np.where(flip, ii, jj)
    if hasattr(judge, "scores") and hasattr(judge, "prob_from_scores"):  # criteria judges: score items once
        s_items = judge.scores(list(responses))
        p_clean = judge.prob_from_scores(s_items[ii], s_items[jj])
    else:
        pr = [prompts[k] for k in ii]
        p_clean = judge.prob(pr, [responses[k] for k in ii], [responses[k] for k in jj])
    p_true = (1 - epsilon) * p_clean + epsilon * (1 - p_clean)  # NoisyJudge's closed form
    y = (rng.random(len(ii)) < p_true).astype(np.float64)
    n_train = int(train_fraction * len(ii))
    tr, te = np.arange(n_train), np.arange(n_train, len(ii))
    # choose l2 on a validation fifth of the training pairs, then refit on all training pairs
    n_fit = int(0.8 * n_train)
    fit, val = tr[:n_fit], tr[n_fit:]
    best = max(
        l2_grid,
        key=lambda l2: _loglik(
            expit(np.subtract(*fit_bradley_terry(n, ii[fit], jj[fit], y[fit], l2)[[ii[val], jj[val]]])), y[val]
        ).mean(),
    )
    s = fit_bradley_terry(n, ii[tr], jj[tr], y[tr], best)
    p_bt = expit(s[ii[te]] - s[jj[te]])
    p_j = p_true[te]
    acc_j, acc_bt = _accuracy(p_j, y[te]), _accuracy(p_bt, y[te])
    ll_j, ll_bt = _loglik(p_j, y[te]), _loglik(p_bt, y[te])
    m = len(te)
    return TransitivityReport(
        n_items=n,
        n_train=n_train,
        n_test=m,
        epsilon=epsilon,
        l2=float(best),
        judge_accuracy=float(acc_j.mean()),
        bt_accuracy=float(acc_bt.mean()),
        accuracy_diff_se=float((acc_j - acc_bt).std(ddof=1) / np.sqrt(m)),
        judge_loglik=float(ll_j.mean()),
        bt_loglik=float(ll_bt.mean()),
        loglik_diff_se=float((ll_j - ll_bt).std(ddof=1) / np.sqrt(m)),
    )
