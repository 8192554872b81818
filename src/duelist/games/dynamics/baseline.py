"""The RLHF baseline: iterative DPO on a Bradley–Terry fit (no Nash claim)."""

from __future__ import annotations

import numpy as np

from duelist.games.dynamics.base import Dynamics, ExactOracle, register
from duelist.games.matrices import GameError
from duelist.games.solvers import bt_fit, bt_policy


@register
class BTBaseline(Dynamics):
    """Iterative DPO on a Bradley–Terry fit (the RLHF baseline, no Nash claim). Each round collects pairs
    from the current policy, refits BT scores by maximum likelihood on all pairs so far (initial pairs
    from μ), and moves to DPO's population optimum with the fixed reference,
    ``π_{t+1} = μ·exp(s_t/τ)/Z``. On an intransitive game a BT score cannot express the cycle, so this
    ends far from π*_τ. Exception: a rotation-symmetric cycle with uniform μ gives flat scores, and the
    uniform policy is then the equilibrium."""

    name = "bt"
    paper = "iterative DPO (Rafailov et al. 2023) on a Bradley–Terry maximum-likelihood fit"
    rule = "s_t = BT-MLE(pairs from π_0..π_t);  π_{t+1} = μ·exp(s_t/τ)/Z"
    target = "bt"
    iterate = "last"
    rate = "no convergence claim to a Nash equilibrium"

    def configure(self) -> None:
        self.wins = np.zeros_like(self.P)

    def _step(self, oracle: ExactOracle, eta: float) -> None:
        self.wins += oracle.pair_wins(self.policy)
        try:
            scores = bt_fit(self.wins)
        except GameError:  # e.g. a strict order with 0/1 outcomes: the MLE is infinite, a tiny ridge keeps it finite
            scores = bt_fit(self.wins, l2=1e-9 * (self.t + 1))
        if self.tau > 0:
            self.x = self.log_mu + scores / self.tau
        else:
            self.x = np.log(np.clip(bt_policy(scores, self.game.mu, 0.0), 1e-300, None))
