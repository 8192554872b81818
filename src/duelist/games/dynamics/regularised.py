"""Regularised Nash dynamics whose last iterate converges to π*_τ: Nash-MD, Nash-MP, EGPO, INPO, online IPO,
APO."""

from __future__ import annotations

from duelist.games.dynamics.base import Dynamics, ExactOracle, register
from duelist.games.matrices import Game, GameError
from duelist.games.solvers import softmax

# --------------------------------------------------------------------- regularised (last iterate → π*_τ)


@register
class NashMD(Dynamics):
    """Nash mirror descent (Munos et al. 2024, NLHF, tabular update).

    ``ν_t ∝ π_t^{1−ητ} μ^{ητ}``, ``π_{t+1} ∝ ν_t · exp(η P(y ≻ ν_t))``. With a fixed ``η`` the last iterate
    converges to ``π̂_η = BR_τ(π*_{τ/(1−ητ)})``, not to ``π*_τ``; ``KL(π*_τ‖π̂_η) ≤ η²/(32τ²)`` (derived in
    ``solvers.nash_md_fixed_point``). Linearised at ``π̂_η`` an error mode is multiplied by
    ``(1−ητ)(1 + iηλ)``, so KL (quadratic in the error) contracts by about ``(1−ητ)²`` per step: twice
    the log-rate of the paper's ``KL ≤ (1−ητ)^T KL_0 + bias`` bound. The sampled-mode decay removes the
    bias (it is O(η_t²)).
    """

    name = "nash_md"
    paper = "Munos et al. 2024, Nash Learning from Human Feedback (Nash-MD)"
    rule = "ν_t ∝ π_t^{1−ητ} μ^{ητ};  π_{t+1} ∝ ν_t · exp(η P(y ≻ ν_t))"
    target = "regularized"
    iterate = "last"
    rate = "KL(π̂_η‖π_T) ≤ (1−ητ)^T KL_0 (linear) to the biased fixed point π̂_η; bias ≤ η²/(32τ²)"

    def _step(self, oracle: ExactOracle, eta: float) -> None:
        a = eta * self.tau
        z = (1.0 - a) * self.x + a * self.log_mu
        self.x = z + eta * oracle.win_rates(softmax(z))


@register
class NashMP(Dynamics):
    """Nash mirror prox (Tiapkin et al. 2025), with the paper's β = τ and its own step η:

    ``π_{k+½} = argmin_π P(π_k ≻ π)/β + KL(π‖μ) + KL(π‖π_k)/η``, then the same with ``π_{k+½}`` in the
    preference term and ``π_k`` still the prox centre. Closed form (``P(q ≻ π) = πᵀ(1 − Pq)``):
    ``x_{k+½} = c (Pπ_k/β + log μ) + (1−c) x_k`` with ``c = η/(1+η)``. The fixed point is exactly π*_τ.
    Stated rate: ``KL(π*‖π_k) ≤ (1+2β)^{−k} KL_0`` for ``η = 2β``, i.e. ``(1+2β)^{−N/2}`` in ``N = 2k``
    preference queries. Identical to EGPO with ``η_EGPO = c/τ`` (tested). Sampled mode: ``c_t =
    min(c, 2/(t+2))``.
    """

    name = "nash_mp"
    paper = "Tiapkin et al. 2025, Accelerating Nash Learning from Human Feedback via Mirror Prox"
    rule = "x_{k+½} = c(Pπ_k/τ + log μ) + (1−c)x_k;  x_{k+1} = c(Pπ_{k+½}/τ + log μ) + (1−c)x_k,  c = η/(1+η)"
    target = "regularized"
    iterate = "last"
    rate = "KL(π*_τ‖π_k) ≤ (1+η)^{−k} KL_0 (paper: η = 2τ, (1+2τ)^{−N/2} in N queries)"
    needs_tau = True

    @classmethod
    def default_eta(cls, game: Game, steps: int) -> float:
        return 2.0 * game.tau

    def step_size(self) -> float:
        c = self.eta / (1.0 + self.eta)
        if self.decay:
            c = min(c, 2.0 / (self.t + 2))
        return c  # this class's _step takes the mixing weight c

    def _step(self, oracle: ExactOracle, c: float) -> None:
        half = c * (oracle.win_rates(self.policy) / self.tau + self.log_mu) + (1.0 - c) * self.x
        self.x = c * (oracle.win_rates(softmax(half)) / self.tau + self.log_mu) + (1.0 - c) * self.x


@register
class EGPO(Dynamics):
    """Extragradient preference optimisation (Zhou, Fazel, Du 2025), tabular form of its simulations:
    ``π_{t+½} ∝ π_t^{1−ητ} μ^{ητ} exp(η Pπ_t)``, ``π_{t+1} ∝ π_t^{1−ητ} μ^{ητ} exp(η Pπ_{t+½})``.

    Fixed point exactly π*_τ. It is Nash-MP with ``c = ητ`` (``η_MP = ητ/(1−ητ)``), so Nash-MP's rate
    gives ``KL ≤ (1−ητ)^t KL_0`` [derived from that equivalence; the EGPO paper states a linear last-iterate
    rate]. Default ``η = min(1, 1/(2τ))``: extragradient needs ``ηL ≤ 1`` with ``L = ½`` the Lipschitz
    constant of ``q ↦ Pq`` from ℓ1 to ℓ∞ on the simplex, and we keep ``ητ ≤ ½``.
    """

    name = "egpo"
    paper = "Zhou, Fazel, Du 2025, Extragradient Preference Optimization (EGPO)"
    rule = "π_{t+½} ∝ π_t^{1−ητ} μ^{ητ} e^{η Pπ_t};  π_{t+1} ∝ π_t^{1−ητ} μ^{ητ} e^{η Pπ_{t+½}}"
    target = "regularized"
    iterate = "last"
    rate = "linear, KL ≤ (1−ητ)^t KL_0 (via the Nash-MP equivalence)"

    @classmethod
    def default_eta(cls, game: Game, steps: int) -> float:
        return min(1.0, 1.0 / (2.0 * game.tau)) if game.tau > 0 else 1.0

    def _step(self, oracle: ExactOracle, eta: float) -> None:
        half = self._omd(self.x, oracle.win_rates(self.policy), eta)
        self.x = self._omd(self.x, oracle.win_rates(softmax(half)), eta)


@register
class INPO(Dynamics):
    """Online mirror descent with KL to μ (Zhang et al. 2025, INPO; the population minimiser of its pair
    loss): ``π_{t+1} ∝ π_t^{1−ητ} μ^{ητ} exp(η P(y ≻ π_t))``. Fixed point exactly π*_τ; the last iterate
    converges linearly when ``η < 2τ/(τ² + λ²)`` (see ``_omd_default_eta``) and oscillates or diverges for
    larger steps; ``ητ = 1`` is the best-response iteration."""

    name = "inpo"
    paper = "Zhang et al. 2025, Iterative Nash Policy Optimization (OMD with μ)"
    rule = "π_{t+1} ∝ π_t^{1−ητ} μ^{ητ} exp(η P(y ≻ π_t))"
    target = "regularized"
    iterate = "last"
    rate = "linear for η < 2τ/(τ²+λ_max²); KL factor ≈ (1−ητ)² + η²λ² per step"

    def _step(self, oracle: ExactOracle, eta: float) -> None:
        self.x = self._omd(self.x, oracle.win_rates(self.policy), eta)


@register
class OnlineIPO(INPO):
    """Online IPO (Calandriello et al. 2024) as EGPO's tabular simulations run it (``online_ipo_1``): one
    gradient step on the online IPO loss in logit space is the OMD step above with ``η ∝ lr/(τ|Y|)``, so
    the population update equals INPO's; the exact minimiser of the loss (``ητ = 1``) is the
    best-response iteration."""

    name = "online_ipo"
    paper = "Calandriello et al. 2024, Human Alignment of LLMs through Online Preference Optimisation"


@register
class APO(Dynamics):
    """Momentum extrapolation over iterates (He, Yuan, Gu 2024, APO) on top of the INPO/OMD step:
    ``π̂_{t+1} = OMD(π_t)``, ``log π_{t+1} = (1+α) log π̂_{t+1} − α log π̂_t``. A fixed point of the base
    step is a fixed point of the extrapolated map, so the target stays π*_τ; ``α = 0`` is the base
    method (tested). For a real contraction ``z`` of the base step, heavy-ball theory gives the rate
    ``√(zα)`` at the optimal ``α``; the game's rotation makes the gain smaller than on transitive games.
    Sampled mode: the base step decays, ``α`` does not (no prediction is derived for it)."""

    name = "apo"
    paper = "He, Yuan, Gu 2024, Accelerated Preference Optimization (momentum over INPO)"
    rule = "π̂_{t+1} = INPO(π_t);  log π_{t+1} = (1+α) log π̂_{t+1} − α log π̂_t"
    target = "regularized"
    iterate = "last"
    rate = "linear; faster than α = 0 (the paper's O((1−α)/T) is for the BT/DPO setting)"

    def configure(self, alpha: float = 0.5) -> None:
        if not 0 <= alpha < 1:
            raise GameError(f"apo: alpha must lie in [0, 1), got {alpha}")
        self.alpha = float(alpha)
        self.x_hat = self.x.copy()

    def _step(self, oracle: ExactOracle, eta: float) -> None:
        x_hat = self._omd(self.x, oracle.win_rates(self.policy), eta)
        self.x = (1.0 + self.alpha) * x_hat - self.alpha * self.x_hat
        self.x_hat = x_hat - x_hat.max()
