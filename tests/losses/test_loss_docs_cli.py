"""docs/losses.md's table is the registry's, and ``duelist losses`` prints it."""

from __future__ import annotations

from pathlib import Path

from duelist.cli import main
from duelist.losses import registry
from duelist.losses.docs import render_table, table_in

DOCS = Path(__file__).parents[2] / "docs" / "losses.md"


def test_docs_table_is_generated_from_the_registry():
    assert table_in(DOCS.read_text(encoding="utf-8")) == render_table(), (
        "docs/losses.md is stale: run `duelist losses --update-docs docs/losses.md`"
    )
    for name in registry():
        assert f"| `{name}` |" in render_table()


def test_cli_prints_every_loss(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["losses"]) == 0
    out = capsys.readouterr().out
    assert all(f" {name} " in out for name in registry())
    assert "beta=0.1 (> 0)" in out and "Rafailov" in out
    assert main(["losses", "--markdown"]) == 0
    assert capsys.readouterr().out == render_table()
