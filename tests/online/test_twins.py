"""Every online method with a tabular twin reproduces its twin's iterates on a one-token model.

The language-model code path (``OnlineSource`` round → judge check → method's pairing → reference and
anchor scoring → learner updates with the method's registered loss) runs on a table of logits over a
game's responses, with every response enumerated at its exact probability and the judge answering from
the game's matrix; each round's loss is minimised by 300 full-batch SGD steps. The twins' closed forms
(``games.dynamics``) are what the papers' updates are, so agreement to 1e-5 over 5 rounds is the check that
the language-model implementation is the paper's algorithm.
"""

from __future__ import annotations

import numpy as np
import pytest

from duelist.games.matrices import Game, random_matrix
from duelist.games.twin import game_iterates, lm_iterates
from duelist.online.registry import build_method, registry

# (method config, game τ, SGD step): the game's τ must be the method's (τ = 0 for the no-regret methods). The
# step suits each loss's curvature in the logits (squared losses: ≈ 4·pair weight; SPO's: ≈ β·π(y)).
TWINS = [
    ({"name": "online_ipo", "beta": 0.5, "pairing": "all"}, 0.5, 0.45),
    ({"name": "inpo", "eta": 1.0, "tau": 0.5}, 0.5, 0.45),
    ({"name": "dno", "beta": 2.0, "pairing": "all"}, 0.0, 0.45),
    ({"name": "spo", "eta": 2.0}, 0.0, 3.0),
    ({"name": "sppo", "eta": 2.0}, 0.0, 0.45),
    ({"name": "nash_md", "eta": 2.0, "tau": 0.25}, 0.25, 3.0),
    ({"name": "egpo", "eta": 1.0, "tau": 0.5}, 0.5, 0.45),
    ({"name": "nash_mp", "eta": 1.0, "tau": 0.5}, 0.5, 0.45),
    ({"name": "apo", "eta": 1.0, "tau": 0.5, "alpha": 0.5}, 0.5, 0.45),
]
ROUNDS = 5


def _game(tau: float) -> Game:
    """A random 4-response game (intransitive with probability ~1/3 at n = 4) and a non-uniform reference."""
    rng = np.random.default_rng(3)
    return Game(random_matrix(4, rng), np.array([0.4, 0.3, 0.2, 0.1]), tau)


def test_every_method_with_a_twin_is_listed():
    assert {m["name"] for m, *_ in TWINS} == {n for n, s in registry().items() if s.twin is not None}


@pytest.mark.parametrize(("method", "tau", "lr"), TWINS, ids=[m["name"] for m, *_ in TWINS])
def test_language_model_path_reproduces_the_twin(method, tau, lr):
    twin = build_method(method).twin()
    assert twin is not None
    algorithm, step = twin
    options = {k: v for k, v in step.items() if k not in ("eta", "tau")}
    assert step["tau"] == tau
    game = _game(tau)
    lm = lm_iterates(method, game, ROUNDS, passes=300, lr=lr)
    tab = game_iterates(algorithm, game, ROUNDS, step["eta"], **options)
    assert np.abs(tab[1:] - tab[:-1]).max() > 1e-2  # the iterates move: the check is not trivially met
    assert np.abs(lm - tab).max() <= 1e-5


def test_sppo_loss_twin_is_close_to_but_not_the_ideal_update():
    """SPPO's trained loss (−½ for log Z) and its ideal multiplicative-weights step differ at η = 2."""
    game = _game(0.0)
    loss = game_iterates("sppo_loss", game, ROUNDS, 2.0)
    ideal = game_iterates("sppo", game, ROUNDS, 2.0)
    assert 1e-3 < np.abs(loss - ideal).max() < 0.1


def test_a_parametrisation_without_population_form_has_no_twin():
    assert build_method({"name": "online_ipo"}).twin() is None  # best vs worst of K draws
    assert build_method({"name": "dno"}).twin() is None  # DNO-Prct's margin filter
    assert build_method({"name": "online_dpo"}).twin() is None


def test_docs_methods_table_is_generated_from_the_registry(capsys, monkeypatch):
    from pathlib import Path

    from duelist.cli import main
    from duelist.online.docs import render_table, table_in

    docs = Path(__file__).parents[2] / "docs" / "online.md"
    assert table_in(docs.read_text(encoding="utf-8")) == render_table(), (
        "docs/online.md is stale: run `duelist methods --update-docs docs/online.md`"
    )
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert all(f" {name} " in out for name in registry()) and "Rosset" in out
