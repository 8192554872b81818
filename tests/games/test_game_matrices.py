"""Game construction: generators, population mixtures, label noise, loading from files with clear errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from duelist.games import (
    BUILTIN_GAMES,
    GameError,
    builtin_game,
    cyclic_matrix,
    load_game,
    nash_equilibrium,
    random_game,
    random_population_game,
    regularized_equilibrium,
    with_label_noise,
)


@pytest.mark.parametrize("name", list(BUILTIN_GAMES))
def test_builtin_games_are_valid_preference_games(name):
    """P + Pᵀ = 1 to rounding (diagonal exactly ½), entries in [0, 1], μ > 0 summing to 1."""
    g = builtin_game(name, n=7, tau=0.1, seed=1, ref="random")
    assert np.abs(g.P + g.P.T - 1).max() <= 1e-15
    assert g.P.min() >= 0 and g.P.max() <= 1 and np.all(np.diag(g.P) == 0.5)
    assert g.mu.min() > 0 and abs(g.mu.sum() - 1) <= 1e-12


@pytest.mark.parametrize("n", [3, 5, 8])
def test_cyclic_matrix_structure(n):
    """Row i has p at i+1..i+⌊(n−1)/2⌋ (mod n), 1−p at i−1..i−⌊(n−1)/2⌋, and ½ at distance n/2 (even n)."""
    P = cyclic_matrix(n, 0.8)
    k = (n - 1) // 2
    for i in range(n):
        assert np.allclose(P[i, [(i + d) % n for d in range(1, k + 1)]], 0.8)
        assert np.allclose(P[i, [(i - d) % n for d in range(1, k + 1)]], 0.2)
    assert np.isclose(P.sum(), n * n / 2)


def test_population_game_is_the_weighted_mixture():
    g = random_population_game(6, 3, seed=2)
    assert np.abs(np.tensordot(g.weights, g.groups, 1) - g.P).max() <= 1e-15
    assert g.num_groups == 3 and abs(g.weights.sum() - 1) <= 1e-15


def test_label_noise_rescales_temperature_and_keeps_the_nash_equilibrium():
    """Flip rate ε: P' = ½ + (1−2ε)S, so π ∝ μ·exp(P'π/τ) ⇔ π ∝ μ·exp(Pπ/(τ/(1−2ε))): the regularised
    equilibrium of the noisy game is the clean one at τ/(1−2ε). The sign pattern of Sπ is unchanged, so
    the von Neumann winner is too."""
    g = random_game(8, 0.1, seed=4, ref="random")
    noisy = with_label_noise(g, 0.2)
    a = regularized_equilibrium(noisy.P, noisy.mu, 0.1)
    b = regularized_equilibrium(g.P, g.mu, 0.1 / (1 - 0.4))
    assert np.abs(a - b).max() <= 1e-12
    assert np.abs(nash_equilibrium(noisy.P) - nash_equilibrium(g.P)).max() <= 1e-9


@pytest.mark.parametrize("ext", ["npy", "csv"])
def test_load_round_trip(tmp_path, ext):
    g = random_game(5, seed=0, ref="random")
    for arr, name in ((g.P, "P"), (g.mu, "mu")):
        path = tmp_path / f"{name}.{ext}"
        np.save(path, arr) if ext == "npy" else np.savetxt(path, np.atleast_2d(arr), delimiter=",", fmt="%.17g")
    h = load_game(tmp_path / f"P.{ext}", tmp_path / f"mu.{ext}", tau=0.3)
    assert np.abs(h.P - g.P).max() <= 1e-15 and np.abs(h.mu - g.mu).max() <= 1e-15 and h.tau == 0.3
    assert np.allclose(load_game(tmp_path / f"P.{ext}").mu, 0.2)


def test_load_errors_name_the_file_and_the_problem(tmp_path):
    P = random_game(4, seed=1).P
    bad = P.copy()
    bad[0, 1] = 0.5 * bad[0, 1]  # stays in [0, 1], breaks P[0,1] + P[1,0] = 1
    cases = {
        "asym.npy": (bad, "P \\+ Pᵀ ≠ 1: P\\[0,1\\] \\+ P\\[1,0\\]"),
        "rect.npy": (P[:3], "must be square"),
        "range.npy": (np.array([[0.5, 1.5], [-0.5, 0.5]]), "must lie in \\[0, 1\\]"),
    }
    for name, (arr, msg) in cases.items():
        np.save(tmp_path / name, arr)
        with pytest.raises(GameError, match=f"{tmp_path / name}.*{msg}"):
            load_game(tmp_path / name)
    np.save(tmp_path / "P.npy", P)
    np.save(tmp_path / "mu3.npy", np.ones(3) / 3)
    with pytest.raises(GameError, match=re.escape("mu3.npy: the reference policy has 3 entries but the game has 4")):
        load_game(tmp_path / "P.npy", tmp_path / "mu3.npy")
    np.save(tmp_path / "mu0.npy", np.array([0.5, 0.5, 0.0, 0.0]))
    with pytest.raises(GameError, match="strictly positive"):
        load_game(tmp_path / "P.npy", tmp_path / "mu0.npy")
    with pytest.raises(GameError, match="no such file"):
        load_game(tmp_path / "missing.npy")
    (tmp_path / "P.txt").write_text("0.5")
    with pytest.raises(GameError, match=re.escape("unsupported file type '.txt'")):
        load_game(tmp_path / "P.txt")


def test_cli_reports_a_bad_matrix_in_one_line(tmp_path, capsys):
    """User errors exit with status 2 and a single line naming the file (no traceback)."""
    from duelist.cli import main

    P = np.full((3, 3), 0.5)
    P[0, 1] = 0.9  # P[1,0] left at 0.5
    np.savetxt(tmp_path / "P.csv", P, delimiter=",")
    assert main(["game", "--matrix", str(tmp_path / "P.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "P.csv" in err and "P + Pᵀ ≠ 1" in err
