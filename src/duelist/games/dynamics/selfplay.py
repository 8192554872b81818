"""No-regret self-play (τ = 0): SPPO, SPO, DNO; the average iterate is what converges."""

from __future__ import annotations

import math

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
