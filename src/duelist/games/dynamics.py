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

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from duelist.games.matrices import Game, GameError
from duelist.games.metrics import maxmin_value
from duelist.games.solvers import Solution, bt_fit, bt_policy, group_rewards, softmax

# ---------------------------------------------------------------------------------------------- oracles


class ExactOracle:
    """Exact win-rates. ``evaluations`` counts win-rate vectors, one per group (a full mixture call on a
    K-group population costs K), so finite-sum methods that query single groups are charged fairly."""

    sampled = False

    def __init__(self, game: Game) -> None:
        self.game = game
        self.groups, self.weights = game.group_matrices()
        self.evaluations = 0
        self.queries = 0

    def _matrix(self, group: int | None) -> np.ndarray:
        self.evaluations += len(self.groups) if group is None else 1
        return self.game.P if group is None else self.groups[group]

    def win_rates(self, q: np.ndarray, group: int | None = None) -> np.ndarray:
        return self._matrix(group) @ q

    def pair_wins(self, q: np.ndarray) -> np.ndarray:
        """Expected win counts ``q_i q_j P[i, j]`` of one unit of pairs drawn from ``q ⊗ q``."""
        return np.outer(q, q) * self._matrix(None)


class SampledOracle(ExactOracle):
    """``m`` Bernoulli preference queries per response and call (opponents drawn from ``q``)."""

    sampled = True

    def __init__(self, game: Game, queries: int, rng: np.random.Generator) -> None:
        super().__init__(game)
        if queries < 1:
            raise GameError(f"sampled mode needs at least one query per response (got {queries})")
        self.m, self.rng = int(queries), rng

    def win_rates(self, q: np.ndarray, group: int | None = None) -> np.ndarray:
        p = np.clip(self._matrix(group) @ q, 0.0, 1.0)
        self.queries += p.size * self.m
        return self.rng.binomial(self.m, p) / self.m

    def pair_wins(self, q: np.ndarray) -> np.ndarray:
        """Win counts of ``n·m`` pairs drawn from ``q ⊗ q`` (same query budget as one win-rate call),
        scaled to unit mass."""
        n = q.size
        pairs = n * self.m
        counts = self.rng.multinomial(pairs, np.outer(q, q).ravel()).reshape(n, n)
        self.queries += pairs
        return self.rng.binomial(counts, self._matrix(None)) / pairs


# ------------------------------------------------------------------------------------------- base class


class Dynamics:
    """One algorithm. Subclasses set the class attributes and implement ``_step``."""

    name: ClassVar[str]
    paper: ClassVar[str]
    rule: ClassVar[str]  # the update, as a formula (shown by the CLI and in docs/games.md)
    target: ClassVar[str]  # "regularized" | "unregularized" | "maxmin" | "bt"
    iterate: ClassVar[str]  # "last" | "average"
    rate: ClassVar[str]
    needs_tau: ClassVar[bool] = False

    def __init__(self, game: Game, *, eta: float | None = None, steps: int = 1000, decay: bool = False,
                 rng: np.random.Generator | None = None, **options: Any) -> None:
        if self.needs_tau and game.tau <= 0:
            raise GameError(f"{self.name} needs tau > 0")
        self.game, self.P, self.tau = game, game.P, game.tau
        self.log_mu = np.log(game.mu)
        self.eta = float(self.default_eta(game, steps) if eta is None else eta)
        if self.eta <= 0:
            raise GameError(f"{self.name}: step size must be > 0 (got {self.eta})")
        self.decay, self.t = decay, 0
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.x = self.log_mu.copy()
        try:
            self.configure(**options)
        except TypeError as e:  # an option this algorithm does not take
            raise GameError(f"{self.name}: {e}") from e

    def configure(self, **options: Any) -> None:
        """Algorithm-specific options (APO's ``alpha``, VR-Halpern's ``restart``) and extra state."""
        if options:
            raise GameError(f"{self.name}: unknown option(s) {', '.join(options)}")

    @classmethod
    def default_eta(cls, game: Game, steps: int) -> float:
        return _omd_default_eta(game, steps)

    @property
    def policy(self) -> np.ndarray:
        return softmax(self.x)

    def step(self, oracle: ExactOracle) -> None:
        self._step(oracle, self.step_size())
        self.x = self.x - self.x.max()  # logits are defined up to a constant; keep them bounded
        self.t += 1

    def step_size(self) -> float:
        """``η``, or in sampled mode the η whose anchor weight is ``min(ητ, 2/(t+2))``."""
        if not self.decay or self.tau == 0:
            return self.eta
        return min(self.eta * self.tau, 2.0 / (self.t + 2)) / self.tau

    def _step(self, oracle: ExactOracle, eta: float) -> None:
        raise NotImplementedError

    def _omd(self, x: np.ndarray, g: np.ndarray, eta: float) -> np.ndarray:
        """``(1−ητ)x + ητ log μ + η g``: the KL-to-μ mirror-descent step shared by most methods."""
        a = eta * self.tau
        return (1.0 - a) * x + a * self.log_mu + eta * g


def _omd_default_eta(game: Game, steps: int) -> float:
    """``τ/(τ² + λ²)`` with ``λ = ½``: linearised at the equilibrium, the OMD map multiplies each error
    mode by ``(1−ητ) + iηλ`` where ``iλ`` are the (imaginary) eigenvalues of ``SD`` (see
    ``solvers.regularized_equilibrium``). ``|·| < 1`` iff ``η < 2τ/(τ²+λ²)``; half that bound with
    ``λ = ½`` leaves margin (we measured ``max|λ| = 0.32`` over random and cyclic games with n ≤ 40; the
    provable bound from ``|S_ij| ≤ ½`` is 3/2). For ``τ = 0`` the MWU horizon step is used."""
    if game.tau == 0:
        return math.sqrt(8 * math.log(game.n) / max(steps, 1))
    return game.tau / (game.tau**2 + 0.25)


ALGORITHMS: dict[str, type[Dynamics]] = {}


def register(cls: type[Dynamics]) -> type[Dynamics]:
    ALGORITHMS[cls.name] = cls
    return cls


def get_algorithm(name: str) -> type[Dynamics]:
    if name not in ALGORITHMS:
        raise GameError(f"unknown algorithm {name!r}; available: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


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


# -------------------------------------------------------------------------------- population-game solvers


@register
class VRHalpern(Dynamics):
    """Variance-reduced Halpern iteration (Cai, Alacaoglu, Diakonikolas 2024) on the finite-sum game.

    Monotone inclusion ``0 ∈ F(π) + G(π)`` with ``F = Σ_k w_k F_k``, ``F_k(π) = −P_k π`` (monotone:
    ``dᵀP_k d = 0`` on ``1ᵀd = 0``; Lipschitz ``‖S_k‖₂``) and ``G = τ∂KL(·‖μ) + N_Δ`` (its resolvent is the
    Euclidean KL-prox on the simplex, solved by a 1-D Newton in the Wright ω function). The zero is π*_τ.
    Outer: Halpern on the resolvent, ``u_{j+1} = λ_j u_0 + (1−λ_j) J̃(u_j)``, ``λ_j = 1/(j+2)``. Inner
    (``J̃(u)`` = solution ``v`` of ``v = J_{ηG}(u − ηF(v))``): forward-backward steps with a loopless SVRG
    estimate ``F(w) + F_k(v) − F_k(w)``, ``k ~ w``, snapshot ``w`` refreshed with probability
    ``1/√K``; ``4 + 2⌈log₂(j+2)⌉`` inner steps, tightening with j. Deviation: the anchor restarts at the
    current point whenever the residual ``‖u − J̃(u)‖`` halves, which turns Halpern's O(1/k) into a
    linear rate on this τ-strongly monotone problem (``restart=False`` gives plain Halpern).
    ``η = 1/L̄`` with ``L̄² = Σ w_k ‖S_k‖²``. One step here is one outer iteration; ``evaluations`` counts
    group win-rate vectors. Sampled mode: the same iteration on noisy group win-rates (no decay).
    """

    name = "vr_halpern"
    paper = "Cai, Alacaoglu, Diakonikolas 2024, Variance Reduced Halpern Iteration for Finite-Sum Monotone Inclusions"
    rule = "u_{j+1} = u_0/(j+2) + (1 − 1/(j+2)) J̃_{η(F+G)}(u_j),  J̃ by SVRG forward-backward"
    target = "regularized"
    iterate = "last"
    rate = "O(1/k) residual (monotone); linear with restarts when τ > 0"

    @classmethod
    def default_eta(cls, game: Game, steps: int) -> float:
        """``1/L̄``; ``1/(2L̄)`` when ``τ = 0``, where the prox adds no contraction and the inner
        forward-backward map must contract by itself (factor ``ηL̄``)."""
        groups, w = game.group_matrices()
        L = math.sqrt(sum(wk * np.linalg.norm(g - 0.5, 2) ** 2 for g, wk in zip(groups, w, strict=True)))
        return 1.0 / L if game.tau > 0 else 0.5 / L

    def configure(self, restart: bool = True) -> None:
        self.restart = restart
        self.groups, self.weights = self.game.group_matrices()
        self.K = len(self.groups)
        self.u = self.game.mu.copy()
        self.anchor, self.v, self.j, self.nu = self.u.copy(), self.u.copy(), 0, 0.0
        self.res0: float | None = None
        self.residual = float("nan")
        self.batch = math.ceil(math.sqrt(self.K))

    @property
    def policy(self) -> np.ndarray:
        return self.v

    def step(self, oracle: ExactOracle) -> None:
        eta = self.eta
        c = eta * self.tau
        v = self.v
        snap, F_snap = v, -oracle.win_rates(v)
        for i in range(4 + 2 * math.ceil(math.log2(self.j + 2))):
            if i > 0 and self.rng.random() < 1.0 / math.sqrt(self.K):  # loopless SVRG snapshot refresh
                snap, F_snap = v, -oracle.win_rates(v)
            F = F_snap.copy()
            if snap is not v:  # F(w) + F_k(v) − F_k(w), k ~ weights: unbiased for F(v)
                for k in self.rng.choice(self.K, size=self.batch, p=self.weights):
                    F += (oracle.win_rates(snap, group=k) - oracle.win_rates(v, group=k)) / self.batch
            v, self.nu = kl_prox_simplex(self.u - eta * F, c, self.log_mu, self.nu)
        self.v = v
        res = self.residual = float(np.linalg.norm(self.u - v))  # ‖u_j − J̃(u_j)‖
        if self.res0 is None or (self.restart and res <= 0.5 * self.res0):
            self.anchor, self.u, self.j, self.res0 = v.copy(), v.copy(), 0, res  # restart at the new point
        else:
            lam = 1.0 / (self.j + 2)
            self.u = lam * self.anchor + (1.0 - lam) * v
            self.j += 1
        self.t += 1


def kl_prox_simplex(v: np.ndarray, c: float, log_mu: np.ndarray, nu: float = 0.0) -> tuple[np.ndarray, float]:
    """``argmin_{π∈Δ} ½‖π − v‖² + c·KL(π‖μ)`` and the multiplier of ``Σπ = 1``.

    Stationarity: ``π_i + c log π_i = v_i + c log μ_i − c − ν``, so ``π_i = c·ω(s_i)`` with Wright's
    ``ω(s) = W(eˢ)`` and ``s_i = (v_i + c log μ_i − c − ν)/c − log c``. ``Σ_i π_i(ν)`` is decreasing and
    convex in ν (``dπ_i/dν = −ω/(1+ω)``); Newton on ν from the warm start, bisection-safeguarded. ``c = 0``
    is the Euclidean projection.
    """
    if c == 0:
        return project_simplex(v), 0.0
    from scipy.special import wrightomega

    base = (v + c * log_mu - c) / c - math.log(c)

    def total(nu: float) -> tuple[float, np.ndarray]:
        w = wrightomega(base - nu / c).real
        return c * w.sum() - 1.0, w

    lo, hi = -np.inf, np.inf
    for _ in range(100):
        h, w = total(nu)
        if h > 0:
            lo = nu
        else:
            hi = nu
        if abs(h) < 1e-14:
            break
        new = nu + h / (w / (1.0 + w)).sum()
        if not lo < new < hi:  # Newton left the bracket: bisect (or expand an open bracket)
            new = (lo + hi) / 2 if np.isfinite(lo) and np.isfinite(hi) else (nu + (1.0 if h > 0 else -1.0)
                                                                             * max(1.0, abs(nu)))
        nu = new
    pi = c * w
    return pi / pi.sum(), nu


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the probability simplex (sort-based, Held et al. 1974)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    k = np.flatnonzero(u - css / np.arange(1, v.size + 1) > 0)[-1]
    return np.maximum(v - css[k] / (k + 1), 0.0)


@register
class MaxMin(Dynamics):
    """MaxMin over populations (Chakraborty et al. 2024, MaxMin-RLHF), with group k's reward its win-rate
    against the reference, ``r_k = P_k μ``. Target: ``argmax_π min_k πᵀr_k − τKL(π‖μ)``
    (``solvers.maxmin_policy``). The policy is the exact KL-regularised best response to the current group
    weights, ``π_t = softmax(log μ + R w_t/τ)``, and the weights move towards the groups that are worst
    off: ``w_{t+1} ∝ w_t exp(−γ_t R̂ᵀπ_t)``. Deviation from the paper: its "optimise for the currently
    worst group" hard argmin becomes this multiplicative update, i.e. mirror descent on the convex dual
    ``D(w) = τ log Σ μ e^{Rw/τ}`` (whose gradient is ``Rᵀπ_w``), which converges instead of chattering;
    γ → ∞ recovers the hard rule. Step: ``γ_t = η·τ/max_k Var_{π_t}(r_k)`` (the inverse of D's local
    ℓ1-smoothness, ``max_k ∂²D/∂w_k²``), halved until D decreases. Sampled mode averages the reward
    estimates over steps (they do not depend on π). A plain game is one group, solved in one step.
    """

    name = "maxmin"
    paper = "Chakraborty et al. 2024, MaxMin-RLHF (egalitarian objective over groups)"
    rule = "π_t = softmax(log μ + R w_t/τ);  w_{t+1} ∝ w_t · exp(−γ_t R̂ᵀπ_t),  R = [P_k μ]_k"
    target = "maxmin"
    iterate = "last"
    rate = "linear when the dual is strongly convex (affinely independent group rewards)"
    needs_tau = True

    @classmethod
    def default_eta(cls, game: Game, steps: int) -> float:
        return 1.0

    def step_size(self) -> float:
        return self.eta  # the rewards are averaged instead (sampled mode)

    def configure(self) -> None:
        self.K = self.game.num_groups
        self.w = np.full(self.K, 1.0 / self.K)
        self.R = np.zeros((self.game.n, self.K))

    def _dual(self, w: np.ndarray) -> float:
        z = self.log_mu + self.R @ w / self.tau
        return float(z.max() + np.log(np.exp(z - z.max()).sum()))

    def _step(self, oracle: ExactOracle, eta: float) -> None:
        est = np.stack([oracle.win_rates(self.game.mu, group=k if self.K > 1 else None)
                        for k in range(self.K)], axis=1)
        self.R += (est - self.R) / (self.t + 1)
        pi = softmax(self.log_mu + self.R @ self.w / self.tau)
        values = self.R.T @ pi
        var = ((self.R - values) ** 2 * pi[:, None]).sum(0)
        gamma = eta * self.tau / max(float(var.max()), 1e-300)
        d0 = self._dual(self.w)
        for _ in range(60):
            w = self.w * np.exp(-gamma * (values - values.min()))
            w /= w.sum()
            if self._dual(w) <= d0:
                break
            gamma /= 2
        self.w = w
        self.x = self.log_mu + self.R @ self.w / self.tau


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


# ------------------------------------------------------------------------------------------------ runner


@dataclass
class Run:
    """One algorithm run: per-iteration metrics of the last and the average iterate, and the cost."""

    algorithm: str
    target: str
    iterate: str
    mode: str
    eta: float
    last: np.ndarray
    average: np.ndarray
    history: dict[str, np.ndarray] = field(repr=False)
    trajectory: np.ndarray = field(repr=False)  # (T, n): the last iterate after each step

    @property
    def policy(self) -> np.ndarray:
        """The iterate the algorithm's theory is about."""
        return self.average if self.iterate == "average" else self.last

    @property
    def error(self) -> np.ndarray:
        """Per-iteration distance to the algorithm's own target, for its reported iterate:
        regularised duality gap (``regularized``, ``bt``), unregularised duality gap (``unregularized``)
        or MaxMin suboptimality (``maxmin``)."""
        which = "avg" if self.iterate == "average" else "last"
        return self.history[f"{_error_key(self.target)}_{which}"]

    def iterations_to(self, tol: float) -> int | None:
        hits = np.flatnonzero(self.error <= tol)
        return int(hits[0]) + 1 if hits.size else None

    def summary(self, tol: float = 1e-6) -> dict[str, Any]:
        which = "avg" if self.iterate == "average" else "last"
        h = self.history
        return {"algorithm": self.algorithm, "target": self.target, "iterate": self.iterate, "mode": self.mode,
                "eta": self.eta, "steps": int(h["cost"].size), "error": float(self.error[-1]),
                "gap": float(h[f"gap_{which}"][-1]), "gap_unregularized": float(h[f"gap0_{which}"][-1]),
                "kl_to_equilibrium": float(h[f"kl_{which}"][-1]),
                "win_rate_vs_equilibrium": float(h[f"win_{which}"][-1]),
                "iterations_to_tol": self.iterations_to(tol), "tol": tol,
                "cost": int(h["cost"][-1]), "cost_unit": "queries" if self.mode == "sampled" else "evaluations",
                "equilibrium_found": self.policy.tolist()}


def _error_key(target: str) -> str:
    return {"unregularized": "gap0", "maxmin": "maxmin"}.get(target, "gap")


def run(game: Game, algorithm: str, steps: int = 1000, *, mode: str = "exact", queries: int = 100,
        seed: int = 0, eta: float | None = None, solution: Solution | None = None, tol: float | None = None,
        **options: Any) -> Run:
    """Run ``algorithm`` for ``steps`` iterations and record, for the last and the average iterate,
    the τ-regularised duality gap, the unregularised one, ``KL(π*_τ‖π)``, ``P(π ≻ π*_τ)`` (and the MaxMin
    suboptimality for ``maxmin``); ``cost`` is cumulative evaluations (exact) or queries (sampled).
    With ``tol``, stop at the first iteration whose ``Run.error`` is ≤ tol (the history is shorter)."""
    if mode not in ("exact", "sampled"):
        raise GameError(f"mode must be 'exact' or 'sampled', got {mode!r}")
    cls = get_algorithm(algorithm)
    rng = np.random.default_rng(seed)
    oracle = SampledOracle(game, queries, rng) if mode == "sampled" else ExactOracle(game)
    algo = cls(game, eta=eta, steps=steps, decay=mode == "sampled", rng=rng, **options)
    sol = solution or Solution(game)
    played = np.empty((steps, game.n))
    lasts = np.empty((steps, game.n))
    cost = np.empty(steps)
    total = np.zeros(game.n)
    done = steps
    for t in range(steps):
        played[t] = algo.policy
        total += played[t]
        algo.step(oracle)
        lasts[t] = algo.policy
        cost[t] = oracle.queries if oracle.sampled else oracle.evaluations
        if tol is not None:
            pi = total / (t + 1) if cls.iterate == "average" else lasts[t]
            if policy_metrics(game, pi[None], sol, cls.target == "maxmin")[_error_key(cls.target)][0] <= tol:
                done = t + 1
                break
    played, lasts, cost = played[:done], lasts[:done], cost[:done]
    # the average is over the policies that were played, π_0..π_t, as in the no-regret bounds
    averages = np.cumsum(played, axis=0) / np.arange(1, done + 1)[:, None]
    hist = {"cost": cost}
    for which, pis in (("last", lasts), ("avg", averages)):
        for key, values in policy_metrics(game, pis, sol, maxmin=cls.target == "maxmin").items():
            hist[f"{key}_{which}"] = values
    return Run(algorithm, cls.target, cls.iterate, mode, algo.eta, lasts[-1].copy(), averages[-1].copy(), hist,
               lasts)


def policy_metrics(game: Game, pis: np.ndarray, solution: Solution | None = None,
                   maxmin: bool = False) -> dict[str, np.ndarray]:
    """Metrics of each row of ``pis`` (T × n), vectorised: regularised duality gap ``2τKL(π‖BR(π))``,
    unregularised duality gap ``2(max_y (Pπ)_y − ½)``, ``KL(π*_τ‖π)``, ``P(π ≻ π*_τ)`` and optionally
    the MaxMin suboptimality."""
    sol = solution or Solution(game)
    P, mu, tau = game.P, game.mu, game.tau
    star = sol.regularized
    G = pis @ P.T  # row t: Pπ_t
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pi = np.log(pis)
        if tau > 0:
            Z = np.log(mu) + G / tau
            log_br = Z - Z.max(1, keepdims=True)
            log_br -= np.log(np.exp(log_br).sum(1, keepdims=True))
            gap = 2 * tau * np.where(pis > 0, pis * (log_pi - log_br), 0.0).sum(1)
        else:
            gap = 2 * (G.max(1) - 0.5)
        m = star > 0
        kl_star = (star[m] * (np.log(star[m]) - log_pi[:, m])).sum(1)
    out = {"gap": np.maximum(gap, 0.0), "gap0": np.maximum(2 * (G.max(1) - 0.5), 0.0),
           "kl": np.maximum(kl_star, 0.0), "win": pis @ (P @ star)}
    if maxmin:
        R = group_rewards(game)
        best = maxmin_value(R, mu, tau, sol.maxmin)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl_mu = np.where(pis > 0, pis * (log_pi - np.log(mu)), 0.0).sum(1)
        out["maxmin"] = np.maximum(best - ((pis @ R).min(1) - tau * kl_mu), 0.0)
    return out


# ------------------------------------------------------------------------------------ closed-form helpers


def sampled_kl_prediction(game: Game, queries: int, steps: int, solution: Solution | None = None) -> float:
    """Predicted ``E KL(π*_τ‖π_T)`` for a regularised method in sampled mode (module docstring)."""
    from scipy.linalg import solve_continuous_lyapunov

    star = (solution or Solution(game)).regularized
    g = game.P @ star
    D = np.diag(star) - np.outer(star, star)
    A = -np.eye(game.n) + game.P @ D / game.tau
    Q = np.diag(g * (1.0 - g)) / (queries * game.tau**2)
    c = 2.0
    Sigma = solve_continuous_lyapunov(c * A + 0.5 * np.eye(game.n), -(c**2) * Q)
    return float(np.trace(D @ Sigma)) / (2.0 * steps)


def mwu_sampled_bound(n: int, eta: float, steps: int, queries: int | None) -> float:
    """Bound on the (expected) exploitability of MWU's average iterate; ``queries=None`` is exact mode."""
    bound = math.log(n) / (eta * steps) + eta / 8.0
    if queries is not None:
        bound += math.sqrt(math.log(2 * n) / (2 * queries * steps)) + math.sqrt(1.0 / (2 * math.pi * queries * steps))
    return bound


def algorithm_table() -> list[dict[str, str]]:
    """One row per registered algorithm (used by ``duelist game --list`` and docs/games.md)."""
    return [{"name": c.name, "target": c.target, "iterate": c.iterate, "rule": c.rule, "rate": c.rate,
             "paper": c.paper} for c in ALGORITHMS.values()]
