"""Listing output that survives pipes: names never cut, full width without a terminal, plain JSON."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest

from duelist.cli import main
from duelist.data import tasks
from duelist.tables import Column, print_table


def test_tasks_piped_into_cat_show_every_name_whole():
    """`COLUMNS=30 duelist tasks | cat`: no terminal, so each task is one whole line with its name."""
    env = {**os.environ, "COLUMNS": "30"}
    out = subprocess.run(
        f"{sys.executable} -m duelist.cli tasks | cat", shell=True, env=env, capture_output=True, text=True, check=True
    ).stdout
    for name in tasks.names():
        line = next(line for line in out.splitlines() if f" {name} " in line)
        assert tasks.TASKS[name].description in line  # the whole row on one line, nothing cut or wrapped
    assert "…" not in out


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_narrow_terminal_wraps_prose_and_keeps_names_whole(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    out = FakeTerminal()
    rows = [("intransitive-review", "12345.678", "a long description " * 5)]
    print_table("t", ["name", Column("value", justify="right"), Column("description", wrap=True)], rows, file=out)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # without the terminal's colour codes
    assert "intransitive-review" in text and "12345.678" in text and "…" not in text
    assert max(len(line) for line in text.splitlines()) == 40  # it fits the terminal: the prose wraps


@pytest.mark.parametrize("argv, key", [
    (["tasks", "--json"], None),
    (["tasks", "list", "--json"], None),
    (["losses", "--json"], None),
    (["judges", "--json"], "judges"),
    (["game", "--list", "--json"], "games"),
])
def test_json_listings(argv, key, capsys):
    assert main(argv) == 0
    got = json.loads(capsys.readouterr().out)
    items = got[key] if key else got
    assert items and all(isinstance(i["name"], str) for i in items)
    if argv[0] == "tasks":
        assert [i["name"] for i in items] == tasks.names()


def test_game_results_as_json_on_stdout(capsys):
    assert main(["game", "rps", "--algorithms", "egpo", "--steps", "20", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)  # nothing but the JSON document
    assert got["game"]["n"] == 3 and set(got["algorithms"]) == {"egpo"}
