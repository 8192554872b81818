"""The kind registry: one registration per name, parameters validated from the signature with errors that list
what is valid, the docs table and the CLI generated from it, and the helpers a learner calls."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from duelist.cli import main
from duelist.models.heads import ScalarHeads, fit_normalisation
from duelist.rewards import KindConfigError, build_kind, get_kind, register_kind, registry
from duelist.rewards.bt import BradleyTerry
from duelist.rewards.docs import render_table, table_in
from duelist.rewards.registry import index_users

DOCS = Path(__file__).parents[2] / "docs" / "reward_models.md"


def test_duplicate_and_malformed_registrations_are_refused():
    with pytest.raises(ValueError, match="registered twice"):
        register_kind("bt", paper="", formula="")(BradleyTerry)

    class Positional(BradleyTerry):
        def __init__(self, scale: float = 1.0):
            pass

    with pytest.raises(TypeError, match="keyword-only"):
        register_kind("positional-test", paper="", formula="")(Positional)
    assert "positional-test" not in registry()


def test_parameters_are_validated_with_valid_choices_listed():
    assert get_kind("gpm", k=3, tau=0.2).params == {
        "k": 3, "tau": 0.2, "prompt_head": False, "margin": False, "layers": 0, "width": 256
    }
    with pytest.raises(KindConfigError, match=r"kind\.tau: Input should be greater than 0 \(got -1\).*k=2 \(≥ 1\)"):
        get_kind("gpm", tau=-1)
    with pytest.raises(KindConfigError, match=r"model\.kind\.name: unknown model kind 'rm'; valid kinds: bt, crm, gpm"):
        build_kind({"name": "rm"}, prefix="model.kind")
    with pytest.raises(KindConfigError, match="expected a mapping with a name"):
        build_kind({"k": 1})
    assert BradleyTerry(margin=True).params == {"center_rewards_coefficient": 0.0, "margin": True}
    with pytest.raises(KindConfigError, match="center_rewards_coefficient"):
        BradleyTerry(center_rewards_coefficient=-1)


def test_docs_table_is_generated_and_the_cli_prints_it(capsys, monkeypatch):
    assert table_in(DOCS.read_text(encoding="utf-8")) == render_table(), (
        "docs/reward_models.md is stale: run `duelist reward-kinds --update-docs docs/reward_models.md`"
    )
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["reward-kinds"]) == 0
    out = capsys.readouterr().out
    assert all(f" {name} " in out for name in registry())
    assert main(["reward-kinds", "--markdown"]) == 0
    assert capsys.readouterr().out == render_table()


def test_index_users_and_normalisation():
    """User values 40, 3, 40, 7 → ids [3, 7, 40] and rows [2, 0, 2, 1]. Normalisation: mean and population std per
    column ([1, 3] → mean 2, std 1; a constant column keeps std 1)."""
    ids, rows = index_users([40.0, 3.0, 40.0, 7.0])
    assert ids == [3, 7, 40] and rows.tolist() == [2, 0, 2, 1]
    with pytest.raises(ValueError, match="whole numbers"):
        index_users([1.5])
    head = ScalarHeads(4, columns=2)
    fit_normalisation(head, torch.tensor([[1.0, 5.0], [3.0, 5.0]]))
    assert head.norm_mean.tolist() == [2.0, 5.0] and head.norm_std.tolist() == [1.0, 1.0]
    out = head(torch.zeros(1, 4))
    assert out["scores"].tolist() == [[-2.0, -5.0]]
