"""Oracles, the ``Dynamics`` base class and the algorithm registry (see the package docstring)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from duelist.games.matrices import Game, GameError
from duelist.games.solvers import softmax

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
