"""Preference games: a matrix ``P`` over ``n`` responses, a reference policy ``μ`` and a temperature ``τ``.

``P[i, j]`` is the probability that response ``i`` beats response ``j``; a valid matrix has entries in
[0, 1] and ``P + Pᵀ = 1`` (so the diagonal is 1/2). Writing ``P = ½·11ᵀ + S`` makes ``S`` skew-symmetric,
which is what makes the game symmetric and zero-sum: ``πᵀPπ = ½`` for every policy ``π``.

A *population* game keeps each group's matrix ``P_k`` and its weight ``w_k``; the game itself is the
mixture ``P = Σ_k w_k P_k`` (a random annotator from the population). The groups are what MaxMin and the
finite-sum (VR-Halpern) solver work with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from duelist.data.sources import DataError

ATOL = 1e-9  # P + Pᵀ = 1 and Σμ = 1 are checked to this absolute tolerance


class GameError(DataError):
    """A preference game that cannot be used (bad matrix, bad reference policy, unreadable file)."""


def check_preference_matrix(P: np.ndarray, where: str = "P") -> np.ndarray:
    """Return ``P`` as a float64 square matrix, or raise GameError saying what is wrong and where."""
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] != P.shape[1] or P.shape[0] < 2:
        raise GameError(f"{where}: a preference matrix must be square with n >= 2, got shape {P.shape}")
    if not np.all(np.isfinite(P)):
        raise GameError(f"{where}: the matrix has NaN or infinite entries")
    if P.min() < -ATOL or P.max() > 1 + ATOL:
        raise GameError(f"{where}: entries are probabilities and must lie in [0, 1] "
                        f"(found min {P.min():.4g}, max {P.max():.4g})")
    err = np.abs(P + P.T - 1.0)
    if err.max() > ATOL:
        i, j = np.unravel_index(int(err.argmax()), err.shape)
        raise GameError(f"{where}: P + Pᵀ ≠ 1: P[{i},{j}] + P[{j},{i}] = {P[i, j] + P[j, i]:.6g} "
                        f"(each pair's two probabilities must sum to 1; the diagonal must be 0.5)")
    # snap to exact skew-symmetry so that later identities (πᵀPπ = ½) hold to rounding
    P = np.clip(0.5 * (P + 1.0 - P.T), 0.0, 1.0)
    return P


def check_reference(mu: np.ndarray, n: int, where: str = "mu") -> np.ndarray:
    mu = np.asarray(mu, dtype=np.float64).reshape(-1)
    if mu.shape != (n,):
        raise GameError(f"{where}: the reference policy has {mu.size} entries but the game has {n} responses")
    if not np.all(np.isfinite(mu)) or mu.min() <= 0:
        # the KL-regularised game needs full support: KL(π‖μ) is infinite off it
        raise GameError(f"{where}: the reference policy needs strictly positive entries (min {mu.min():.4g})")
    if abs(mu.sum() - 1.0) > 1e-6:
        raise GameError(f"{where}: the reference policy must sum to 1 (sums to {mu.sum():.6g})")
    return mu / mu.sum()


@dataclass(frozen=True, eq=False)
class Game:
    """A symmetric preference game with KL regularisation towards ``mu`` at temperature ``tau``."""

    P: np.ndarray
    mu: np.ndarray
    tau: float = 0.1
    name: str = "custom"
    groups: np.ndarray | None = None  # (K, n, n): each group's preference matrix
    weights: np.ndarray | None = None  # (K,): group weights, P = Σ_k weights[k]·groups[k]

    def __post_init__(self) -> None:
        P = check_preference_matrix(self.P, f"game {self.name!r}")
        object.__setattr__(self, "P", P)
        object.__setattr__(self, "mu", check_reference(self.mu, P.shape[0], f"game {self.name!r}: mu"))
        if not np.isfinite(self.tau) or self.tau < 0:
            raise GameError(f"game {self.name!r}: tau must be >= 0, got {self.tau}")
        object.__setattr__(self, "tau", float(self.tau))
        if self.groups is not None:
            groups = np.stack([check_preference_matrix(g, f"game {self.name!r}: group {k}")
                               for k, g in enumerate(self.groups)])
            w = np.asarray(self.weights if self.weights is not None else np.ones(len(groups)), dtype=np.float64)
            if w.shape != (len(groups),) or w.min() < 0 or w.sum() <= 0:
                raise GameError(f"game {self.name!r}: need one non-negative weight per group")
            w = w / w.sum()
            if groups.shape[1] != P.shape[0] or np.abs(np.tensordot(w, groups, 1) - P).max() > 1e-9:
                raise GameError(f"game {self.name!r}: P must be the weighted mixture of the groups' matrices")
            object.__setattr__(self, "groups", groups)
            object.__setattr__(self, "weights", w)

    @property
    def n(self) -> int:
        return self.P.shape[0]

    @property
    def num_groups(self) -> int:
        return 1 if self.groups is None else len(self.groups)

    def group_matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """(K, n, n) matrices and (K,) weights; a plain game is one group of weight 1."""
        if self.groups is None:
            return self.P[None], np.ones(1)
        return self.groups, self.weights

    def replace(self, **changes) -> Game:
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------------- generators


def _reference(n: int, ref: str | np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    if ref is None or (isinstance(ref, str) and ref == "uniform"):
        return np.full(n, 1.0 / n)
    if isinstance(ref, str) and ref == "random":
        # softmax of standard normals: uneven (max/min ratio ~ e^4 at n=10) but never near zero
        z = rng.standard_normal(n)
        return np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    return np.asarray(ref, dtype=np.float64)


def random_matrix(n: int, rng: np.random.Generator) -> np.ndarray:
    """Upper triangle i.i.d. uniform on [0, 1], lower triangle 1 − its transpose, diagonal ½."""
    U = np.triu(rng.random((n, n)), 1)
    return U + np.tril(1.0 - U.T, -1) + 0.5 * np.eye(n)


def random_game(n: int = 10, tau: float = 0.1, seed: int = 0, ref: str | np.ndarray | None = "uniform") -> Game:
    rng = np.random.default_rng(seed)
    P = random_matrix(n, rng)
    return Game(P, _reference(n, ref, rng), tau, name=f"random(n={n}, seed={seed})")


def bradley_terry_matrix(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-(s[:, None] - s[None, :])))


def bradley_terry_game(scores: np.ndarray | None = None, tau: float = 0.1, n: int = 10, seed: int = 0,
                       ref: str | np.ndarray | None = "uniform") -> Game:
    """Transitive game ``P[i, j] = σ(s_i − s_j)``; the response with the highest score is a Condorcet winner."""
    rng = np.random.default_rng(seed)
    s = rng.standard_normal(n) if scores is None else np.asarray(scores, dtype=np.float64)
    return Game(bradley_terry_matrix(s), _reference(len(s), ref, rng), tau, name=f"bradley-terry(n={len(s)})")


def cyclic_matrix(n: int, p: float = 1.0) -> np.ndarray:
    """Response ``i`` beats each of the next ``⌊(n−1)/2⌋`` responses (mod n) with probability ``p``.

    For odd ``n`` every response beats exactly half of the others (a regular tournament), so the game is
    invariant under the rotation ``i → i+1`` and its unique equilibrium is uniform. For even ``n`` the
    opposite response (distance n/2) is a tie.
    """
    if not 0.5 <= p <= 1.0:
        raise GameError(f"cyclic game: the win probability p must lie in [0.5, 1], got {p}")
    P = np.full((n, n), 0.5)
    for k in range(1, (n - 1) // 2 + 1):
        idx = np.arange(n)
        P[idx, (idx + k) % n] = p
        P[(idx + k) % n, idx] = 1.0 - p
    return P


def cyclic_game(n: int = 3, p: float = 1.0, tau: float = 0.1, seed: int = 0,
                ref: str | np.ndarray | None = "uniform") -> Game:
    rng = np.random.default_rng(seed)
    name = "rock-paper-scissors" if n == 3 and p == 1.0 else f"cycle(n={n}, p={p})"
    return Game(cyclic_matrix(n, p), _reference(n, ref, rng), tau, name=name)


def population_game(matrices: list[np.ndarray] | np.ndarray, weights: np.ndarray | None = None,
                    tau: float = 0.1, mu: np.ndarray | None = None, name: str = "population") -> Game:
    groups = np.stack([check_preference_matrix(m, f"{name}: group {k}") for k, m in enumerate(matrices)])
    w = np.full(len(groups), 1.0 / len(groups)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    n = groups.shape[1]
    return Game(np.tensordot(w, groups, 1), np.full(n, 1.0 / n) if mu is None else mu, tau, name=name,
                groups=groups, weights=w)


def random_population_game(n: int = 10, groups: int = 4, tau: float = 0.1, seed: int = 0,
                           ref: str | np.ndarray | None = "uniform") -> Game:
    """``groups`` independent random matrices with Dirichlet(1) weights."""
    rng = np.random.default_rng(seed)
    mats = [random_matrix(n, rng) for _ in range(groups)]
    w = rng.dirichlet(np.ones(groups))
    return population_game(mats, w, tau, _reference(n, ref, rng), name=f"population(n={n}, K={groups}, seed={seed})")


def with_label_noise(game: Game, flip: float) -> Game:
    """Each preference label is flipped with probability ``flip``: ``P ← (1−flip)·P + flip·(1−P)``.

    This keeps ``P + Pᵀ = 1`` and scales ``S = P − ½`` by ``1 − 2·flip``; the unregularised equilibrium
    is unchanged (the sign pattern of ``Sπ`` is), while the regularised one moves towards ``μ`` exactly
    as if ``τ`` were ``τ / (1 − 2·flip)``.
    """
    if not 0.0 <= flip < 0.5:
        raise GameError(f"label noise: flip rate must lie in [0, 0.5), got {flip}")

    def noisy(M: np.ndarray) -> np.ndarray:
        return (1.0 - flip) * M + flip * (1.0 - M)

    groups = None if game.groups is None else np.stack([noisy(g) for g in game.groups])
    return game.replace(P=noisy(game.P), groups=groups, name=f"{game.name}+noise({flip})")


# ------------------------------------------------------------------------------------------------ loading


def read_array(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise GameError(f"{path}: no such file ({what})")
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif path.suffix == ".csv":
            arr = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
        else:
            raise GameError(f"{path}: unsupported file type {path.suffix!r} for {what}; use .npy or .csv")
    except (ValueError, OSError) as e:
        raise GameError(f"{path}: cannot read {what}: {e}") from e
    return np.asarray(arr, dtype=np.float64)


def load_game(matrix: str | Path, ref: str | Path | None = None, tau: float = 0.1) -> Game:
    """Load ``P`` (and optionally ``μ``, else uniform) from ``.npy`` or ``.csv`` files."""
    mpath = Path(matrix)
    P = check_preference_matrix(read_array(mpath, "preference matrix"), str(mpath))
    if ref is None:
        mu = np.full(P.shape[0], 1.0 / P.shape[0])
    else:
        rpath = Path(ref)
        mu = check_reference(read_array(rpath, "reference policy"), P.shape[0], str(rpath))
    return Game(P, mu, tau, name=mpath.stem)


# --------------------------------------------------------------------------------------- built-in games

BUILTIN_GAMES: dict[str, tuple[str, Callable[..., Game]]] = {
    "rps": ("rock-paper-scissors (3-cycle, p=1)", lambda n, tau, seed, ref: cyclic_game(3, 1.0, tau, seed, ref)),
    "cycle": ("n-cycle, each response beats the next ⌊(n-1)/2⌋ with p=0.9 (ties at distance n/2 if n is even)",
              lambda n, tau, seed, ref: cyclic_game(n, 0.9, tau, seed, ref)),
    "random": ("random P (upper triangle uniform)", lambda n, tau, seed, ref: random_game(n, tau, seed, ref)),
    "bt": ("transitive Bradley-Terry game, standard-normal scores",
           lambda n, tau, seed, ref: bradley_terry_game(None, tau, n, seed, ref)),
    "population": ("4 random groups with Dirichlet weights",
                   lambda n, tau, seed, ref: random_population_game(n, 4, tau, seed, ref)),
}


def builtin_game(name: str, n: int = 10, tau: float = 0.1, seed: int = 0, ref: str | None = "uniform") -> Game:
    if name not in BUILTIN_GAMES:
        raise GameError(f"unknown game {name!r}; built-in games: {', '.join(BUILTIN_GAMES)}")
    return BUILTIN_GAMES[name][1](n, tau, seed, ref)
