"""``duelist measure accuracy`` on reward models: pair accuracy with ties counting ½, cyclic-triple accuracy (all
three directions), and the command end to end on a trained folder."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import standard_rows, write_jsonl
from helpers import tiny_config

from duelist.data.formats import PreferenceExample
from duelist.eval.rm_accuracy import is_reward_model, pair_accuracy, triple_accuracy
from duelist.train.run import Run


class _Stub:
    """A model whose answers are given: ``prob`` per pair, ``matrices`` per triple."""

    def __init__(self, probs=None, mats=None):
        self.probs, self.mats = probs, mats

    def prob(self, prompts, a, b, users=None):
        return np.asarray(self.probs, dtype=float)

    def matrices(self, prompts, triples, users=None):
        return self.mats


class _Judge:
    """P(a ≻ b) from a table of (a, b) → probability."""

    name = "table"

    def __init__(self, table):
        self.table = table

    def prob(self, prompts, a, b):
        return np.array([self.table[(x, y)] for x, y in zip(a, b, strict=True)])


def _matrix(p01, p12, p20):
    m = np.full((3, 3), 0.5)
    for (i, j), p in zip(((0, 1), (1, 2), (2, 0)), (p01, p12, p20), strict=True):
        m[i, j], m[j, i] = p, 1 - p
    return m


def test_pair_accuracy_counts_ties_half():
    ex = [PreferenceExample("x", "a", "b")] * 4
    res = pair_accuracy(_Stub(probs=[0.9, 0.6, 0.5, 0.2]), ex)
    assert res["accuracy"]["mean"] == pytest.approx(0.625)
    assert res["mean_prob_chosen"] == pytest.approx(0.55)
    assert res["pairs"] == 4


def test_cyclic_triples_need_all_three_directions():
    """Triples 0–2 are cycles under the judge (0 and 1 forward a ≻ b ≻ c ≻ a, 2 backward), triple 3 is transitive.
    The model follows triple 0's cycle, triple 2's reversed cycle, and gets one direction of triple 1 wrong: 2 of 3
    cyclic triples right, 8 of 9 of their directions; 11 of 12 judged pairs right."""
    fwd = {("a", "b"): 1.0, ("b", "c"): 1.0, ("c", "a"): 1.0}
    bwd = {("d", "e"): 0.0, ("e", "f"): 0.0, ("f", "d"): 0.0}
    trans = {("g", "h"): 1.0, ("h", "i"): 1.0, ("i", "g"): 0.0}
    fwd2 = {("j", "k"): 1.0, ("k", "l"): 1.0, ("l", "j"): 1.0}
    judge = _Judge({**fwd, **bwd, **trans, **fwd2})
    records = [{"prompt": "x", "samples": list(s)} for s in ("abc", "jkl", "def", "ghi")]
    mats = [_matrix(0.8, 0.7, 0.9), _matrix(0.8, 0.3, 0.9), _matrix(0.2, 0.4, 0.1), _matrix(0.7, 0.6, 0.3)]
    res = triple_accuracy(_Stub(mats=mats), records, judge)
    assert res["cyclic_triples"] == 3
    assert res["cyclic_accuracy"]["mean"] == pytest.approx(2 / 3)
    assert res["cyclic_directions_right"] == pytest.approx(8 / 9)
    assert res["pairwise_accuracy"]["mean"] == pytest.approx(11 / 12)
    assert res["pairwise_accuracy"]["n"] == 12


def test_a_transitive_model_gets_no_cycle_right():
    """Any scalar reward orders a triple, so at least one direction of every cycle is wrong."""
    judge = _Judge({("a", "b"): 1.0, ("b", "c"): 1.0, ("c", "a"): 1.0})
    rng = np.random.default_rng(0)
    mats = []
    for _ in range(20):
        r = rng.normal(size=3)
        mats.append(1 / (1 + np.exp(-(r[:, None] - r[None, :]))))
    res = triple_accuracy(_Stub(mats=mats), [{"prompt": "x", "samples": ["a", "b", "c"]}] * 20, judge)
    assert res["cyclic_triples"] == 20
    assert res["cyclic_accuracy"]["mean"] == 0.0


def test_measure_accuracy_command_on_a_trained_folder(tiny_model_dir, tmp_path):
    """The command scores the folder on the pairs (the same number as pair_accuracy on the loaded model)."""
    data = write_jsonl(tmp_path / "pairs.jsonl", standard_rows(16))
    cfg = tiny_config(tiny_model_dir, data, tmp_path / "run", "reward_model.kind.name=bt")
    final = Run(cfg).fit().final_dir
    assert is_reward_model(final) and not is_reward_model(tiny_model_dir)
    out = subprocess.run(
        [sys.executable, "-m", "duelist.cli", "measure", "accuracy", str(final), "--data", str(data),
         "--out", str(tmp_path / "m")],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads((tmp_path / "m/accuracy.json").read_text())
    from duelist.data.formats import validate
    from duelist.data.sources import read_records
    from duelist.rewards.model import load_reward_model

    ex = validate(read_records(str(data))).examples
    assert res["pairs"] == 16
    assert res["accuracy"]["mean"] == pair_accuracy(load_reward_model(final), ex)["accuracy"]["mean"]
    assert res["kind"]["name"] == "bt"
