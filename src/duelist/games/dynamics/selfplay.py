"""No-regret self-play (τ = 0): SPPO, SPO, DNO; the average iterate is what converges."""

from __future__ import annotations

import math

import numpy as np

from duelist.games.dynamics.base import Dynamics, ExactOracle, register
from duelist.games.matrices import Game

# ------------------------------------------------------------------------------ no-regret self-play (τ = 0)


@register
class SPPO(Dynamics):
    """Multiplicative weights on win-rates against the current policy (Wu et al. 2024, SPPO's "ideal
    update"; the squared loss with the ``−½`` normaliser has this update as its tabular minimiser).

    Theory: with rewards in [0, 1], MWU's regret is at most ``log n/η + ηT/8``. In self-play
    ``π_tᵀPπ_t = ½``, so the exploitability ``max_y (Pπ̄_T)_y − ½`` of the average iterate *equals*
    regret/T ``≤ log n/(ηT) + η/8``; the default ``η = √(8 log n / T)`` gives ``√(log n/(2T))``.
    This is a worst-case O(1/√T) rate and matches what we observe (about 1e-3 after 1e5 steps at n = 10),
    so a 1e-6 gap is out of reach for any practical T. In sampled mode the estimates stay in [0, 1]:
    the same bound holds for the estimated rewards, plus two martingale terms,
    ``E expl ≤ log n/(ηT) + η/8 + √(log(2n)/(2mT)) + √(1/(2πmT))`` (see ``mwu_sampled_bound``).
    The last iterate cycles and does not converge.
    """

    name = "sppo"
    paper = "Wu et al. 2024, Self-Play Preference Optimization (ideal update) = multiplicative weights"
    rule = "π_{t+1} ∝ π_t · exp(η P(y ≻ π_t))"
    target = "unregularized"
    iterate = "average"
    rate = "average-iterate exploitability ≤ log n/(ηT) + η/8 = O(1/√T)"

    @classmethod
    def default_eta(cls, game: Game, steps: int) -> float:
        return math.sqrt(8 * math.log(game.n) / max(steps, 1))

    def step_size(self) -> float:
        return self.eta  # no-regret analysis uses a constant step in both modes

    def _step(self, oracle: ExactOracle, eta: float) -> None:
        self.x = self.x + eta * oracle.win_rates(self.policy)


@register
class SPO(SPPO):
    """Self-play with win-proportion rewards (Swamy et al. 2024, SPO). Each trajectory's reward is its
    fraction of wins against the other ``N − 1`` self-play samples; the RL step is taken to be natural
    policy gradient (= MWU), the no-regret learner SPO's average-iterate guarantee assumes. In
    expectation the reward of ``y`` is ``P(y ≻ π_t)``, so in exact mode SPO's iterates equal SPPO's; in
    sampled mode ``queries`` plays the role of ``N − 1``."""

    name = "spo"
    paper = "Swamy et al. 2024, A Minimaximalist Approach to RLHF (SPO)"
    rule = "r_t(y) = win fraction of y vs N−1 samples of π_t;  π_{t+1} ∝ π_t · exp(η r_t(y))"


@register
class DNO(SPPO):
    """Direct Nash Optimization, conceptual Algorithm 1 (Rosset et al. 2024): soft policy iteration
    ``π_{t+1} = π_t·exp(r_t/η)/Z`` with ``r_t(y) = P(y ≻ π_t)``, the minimiser of its pairwise regression
    in the tabular case. This is MWU with step ``1/η``: here ``eta`` is DNO's KL coefficient, so
    ``DNO(η)`` and ``SPPO(1/η)`` produce identical iterates (tested)."""

    name = "dno"
    paper = "Rosset et al. 2024, Direct Nash Optimization (Algorithm 1)"
    rule = "π_{t+1} ∝ π_t · exp(P(y ≻ π_t) / η)   (η = KL coefficient)"

    @classmethod
    def default_eta(cls, game: Game, steps: int) -> float:
        return 1.0 / SPPO.default_eta(game, steps)

    def _step(self, oracle: ExactOracle, eta: float) -> None:
        self.x = self.x + oracle.win_rates(self.policy) / eta


@register
class SPPOLoss(SPPO):
    """SPPO as it trains (Wu et al. 2024, Algorithm 1): each iteration minimises its squared loss exactly
    over policies, ``π_{t+1} = argmin_{π∈Δ} E_{y~π_t}(log π(y)/π_t(y) − η(P(y ≻ π_t) − ½))²`` — the tabular
    twin of ``duelist.online`` SPPO on a one-token model.

    The −½ stands in for log Z, so this is not exactly the multiplicative-weights step (``sppo``). With
    ``a = log π_t + η(Pπ_t − ½)``, stationarity of the Lagrangian gives ``log π_{t+1} − a = λπ_{t+1}/(2π_t)``
    for one multiplier λ. Since ``E_{π_t} P(y ≻ π_t) = ½``, Jensen gives ``Σ_y e^{a_y} ≥ 1``, so λ ≤ 0. With
    ``z = log π_{t+1} − a``: ``z e^{−z} = λe^{a}/(2π_t)``, i.e. ``z = −W₀(−λe^{a}/(2π_t)) = −ω(log(−λ) + a −
    log 2π_t)`` (Wright's ω), increasing in λ; λ is the root of ``Σ_y e^{a_y + z_y} = 1`` on (−∞, 0].
    """

    name = "sppo_loss"
    paper = "Wu et al. 2024, Self-Play Preference Optimization (Algorithm 1: its squared loss minimised exactly)"
    rule = "π_{t+1} = argmin_{π∈Δ} E_{y~π_t}(log π(y)/π_t(y) − η(P(y ≻ π_t) − ½))²"
    rate = "no guarantee of its own; close to SPPO's MWU step when η(P − ½) is small"

    def _step(self, oracle: ExactOracle, eta: float) -> None:
        self.x = sppo_loss_step(self.policy, oracle.win_rates(self.policy), eta)


def sppo_loss_step(pi: np.ndarray, win_rates: np.ndarray, eta: float) -> np.ndarray:
    """log π_{t+1} of ``SPPOLoss`` (see its docstring), to machine precision."""
    from scipy.optimize import brentq
    from scipy.special import wrightomega

    a = np.log(pi) + eta * (win_rates - 0.5)
    log_2pi = np.log(2.0 * pi)

    def z(lam: float) -> np.ndarray:
        return np.zeros_like(a) if lam == 0 else -wrightomega(np.log(-lam) + a - log_2pi).real

    def excess(lam: float) -> float:
        return float(np.exp(a + z(lam)).sum() - 1.0)

    if excess(0.0) <= 0:
        return a  # Σ e^a = 1: already normalised
    lo = -1.0
    while excess(lo) > 0:
        lo *= 2.0
    lam = brentq(excess, lo, 0.0, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
    return a + z(lam)
