"""``duelist game``: JSON contents and plot, for a built-in game and for a loaded matrix."""

from __future__ import annotations

import json

import numpy as np

from duelist.cli import main
from duelist.games import Game, cyclic_matrix, regularized_equilibrium, sampled_kl_prediction


def test_cli_builtin_game_json_and_plot(tmp_path, capsys):
    """RPS with a random μ (seed 0): the JSON's LP equilibrium is uniform, EGPO's final gap ≤ 1e-6 with a
    recorded iteration count and its equilibrium equals π*_τ; the BT baseline's gap stays ≥ 0.2."""
    out, png = tmp_path / "g.json", tmp_path / "g.png"
    rc = main(["game", "rps", "--tau", "0.1", "--algorithms", "egpo,bt", "--steps", "200",
               "--json", str(out), "--plot", str(png)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert np.abs(np.array(res["equilibrium"]["nash"]) - 1 / 3).max() <= 1e-9
    star = np.array(res["equilibrium"]["regularized"])
    mu = np.array(res["game"]["mu"])
    assert np.abs(star - regularized_equilibrium(cyclic_matrix(3, 1.0), mu, 0.1)).max() <= 1e-12
    eg = res["algorithms"]["egpo"]
    assert eg["gap"] <= 1e-6 and isinstance(eg["iterations_to_tol"], int) and eg["iterations_to_tol"] <= 200
    assert np.abs(np.array(eg["equilibrium_found"]) - star).max() <= 1e-6
    assert res["algorithms"]["bt"]["gap"] >= 0.2 and res["algorithms"]["bt"]["iterations_to_tol"] is None
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "egpo" in capsys.readouterr().out


def test_cli_loaded_matrix_sampled_mode(tmp_path):
    """A 5-cycle loaded from .npy with a reference from .csv, sampled mode: Nash-MP's KL to π*_τ is of the
    order sampled_kl_prediction gives (1.0e-4 for 100 queries per estimate and 300 steps; one seed, so
    within a factor 4, which a chi-square-like spread over 4 free directions rarely exceeds)."""
    P = cyclic_matrix(5, 0.9)
    mu = np.array([0.4, 0.3, 0.1, 0.1, 0.1])
    np.save(tmp_path / "P.npy", P)
    np.savetxt(tmp_path / "mu.csv", mu[None], delimiter=",")
    out = tmp_path / "r.json"
    rc = main(["game", "--matrix", str(tmp_path / "P.npy"), "--ref", str(tmp_path / "mu.csv"), "--tau", "0.2",
               "--algorithms", "nash_mp", "--mode", "sampled", "--queries", "100", "--steps", "300",
               "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["game"]["n"] == 5 and np.allclose(res["game"]["mu"], mu)
    row = res["algorithms"]["nash_mp"]
    assert row["mode"] == "sampled" and row["cost_unit"] == "queries" and row["cost"] == 300 * 2 * 5 * 100
    pred = sampled_kl_prediction(Game(P, mu, 0.2), 100, 300)
    assert pred / 4 <= row["kl_to_equilibrium"] <= 4 * pred
