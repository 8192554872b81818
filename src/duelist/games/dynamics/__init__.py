"""Nash-learning algorithms as updates on the probability simplex, plus the loop that runs and measures them.

Every algorithm is a small ``Dynamics`` subclass registered in ``ALGORITHMS`` (the CLI's choices and the
docs table come from that dict). An algorithm never sees ``P``: it asks an *oracle* for win-rate vectors
``(P(y ≻ q))_y = Pq`` (or one group's ``P_k q``, or win counts on pairs drawn from ``q``). The exact oracle
answers with the full matrix; the sampled oracle answers with ``queries`` Bernoulli comparisons per
response, opponents drawn from ``q``. Drawing ``y' ~ q`` and then a ``P[y, y']``-coin is one Bernoulli
draw with success probability ``(Pq)_y``, so the estimate is drawn as ``Binomial(m, (Pq)_y)/m``: the same
distribution, without materialising the opponents.

Policies are kept as logits ``x`` (``π = softmax(x)``), start at ``π_0 = μ``, and the updates below are
written in logits with ``g(q) = Pq`` and ``a = ητ`` ("anchor weight"). Shared conventions:

* ``target`` is the equilibrium the paper's theory is about: ``regularized`` (π*_τ), ``unregularized``
  (a von Neumann winner), ``maxmin`` (solvers.maxmin_policy) or ``bt`` (a BT fixed point, no Nash claim);
* ``iterate`` is what that theory is about: the ``last`` iterate or the ``average`` of ``π_0..π_{T−1}``.

Sampled-mode schedule (regularised algorithms). The anchor weight decays as ``a_t = min(ητ, 2/(t+2))``
(each algorithm maps ``a_t`` back to its own step). Once ``a_t = 2/(t+2)`` every regularised update is, to
first order in ``a_t``, the Robbins–Monro iteration ``x ← x + a_t(log μ + ĝ/τ − x)`` for the fixed point
``x = log μ + Pπ(x)/τ``; with gain ``c/t`` (c = 2) its error satisfies ``√t (x_t − x*) → N(0, Σ)`` where
``(cA + ½I)Σ + Σ(cA + ½I)ᵀ + c²Q = 0``, ``A = −I + PD/τ`` (D = diag π* − π*π*ᵀ) and
``Q = diag(g(1−g))/(m τ²)``, ``g = Pπ*``. Hence ``E KL(π*_τ‖π_T) ≈ tr(DΣ)/(2T)``: the tolerance is
``O(1/(mT)) = O(n/queries)`` in KL, ``O(1/√queries)`` in the logits
(``sampled_kl_prediction``). Gain 2/t rather than 1/t makes the deterministic error decay like ``T⁻²``
instead of ``T⁻¹``, so the noise term dominates. The no-regret (average-iterate) algorithms keep their
constant step; see ``SPPO``.
"""

# importing the families registers their algorithms in ALGORITHMS, in this order (the CLI's and the docs')
from duelist.games.dynamics import selfplay, regularised, population, baseline  # noqa: F401, I001
from duelist.games.dynamics.base import ALGORITHMS, Dynamics, ExactOracle, SampledOracle, get_algorithm, register
from duelist.games.dynamics.population import VRHalpern, kl_prox_simplex, project_simplex
from duelist.games.dynamics.runner import (
    Run,
    algorithm_table,
    mwu_sampled_bound,
    policy_metrics,
    run,
    sampled_kl_prediction,
)

__all__ = [
    "ALGORITHMS",
    "Dynamics",
    "ExactOracle",
    "Run",
    "SampledOracle",
    "VRHalpern",
    "algorithm_table",
    "get_algorithm",
    "kl_prox_simplex",
    "mwu_sampled_bound",
    "policy_metrics",
    "project_simplex",
    "register",
    "run",
    "sampled_kl_prediction",
]
