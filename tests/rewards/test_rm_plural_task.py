"""The plural-review task: shipped, licensed, valid, reproducible from its builder, labels that follow each user's
own reward, and disagreement between users that a single pooled model cannot capture."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from scipy.special import expit

from duelist.data import tasks
from duelist.data.formats import validate
from duelist.data.sources import read_records
from duelist.data.tasks.plural_builders import TEMPERATURE, build_plural_review
from duelist.judges.population import PopulationJudge

USER = {"user": (0, None)}


def _rows(split: str) -> list[dict]:
    return [dict(r.data) for r in read_records(f"plural-review:{split}")]


def test_plural_review_files_splits_and_users():
    """2,048 training records from users 0–39 (every pair labelled by 2 users), 100 fit and 500 test records from
    held-out users 40–49 (10 + 50 each); every record validates with its ``user`` field."""
    t = tasks.get("plural-review")
    assert (tasks.HERE / t.folder / t.licences[0]).is_file()
    sizes = {s: len(validate(read_records(f"plural-review:{s}"), fields=USER).examples) for s in t.splits}
    assert sizes == {"train": 2048, "fit": 100, "test": 500}
    train, fit, test = _rows("train"), _rows("fit"), _rows("test")
    assert {r["user"] for r in train} <= set(range(40)) and len({r["user"] for r in train}) == 40
    for split, per_user in ((fit, 10), (test, 50)):
        assert np.bincount([r["user"] for r in split], minlength=50)[40:].tolist() == [per_user] * 10


def test_plural_review_labels_follow_each_users_reward():
    """p_user = σ((Σ_g α_ug (r_g(chosen) − r_g(rejected)))/0.5) recomputed from the record's weights (rounded to 4
    decimals in the file, hence the 2e-3 tolerance)."""
    rows = _rows("test")
    judge = PopulationJudge()
    gc = judge.group_rewards([""] * len(rows), [r["chosen"][0]["content"] for r in rows])
    gr = judge.group_rewards([""] * len(rows), [r["rejected"][0]["content"] for r in rows])
    w = np.array([r["weights"] for r in rows])
    p = expit(np.einsum("ng,gn->n", w, gc - gr) / TEMPERATURE)
    np.testing.assert_allclose(p, [r["p_user"] for r in rows], atol=2e-3)


def test_users_disagree_where_a_pooled_model_cannot_follow():
    """On the training labels the population's pooled preference (what one reward model on all labels learns) is
    right 0.575 of the time for users of the smallest group (stylists), while those users' own rewards would be
    right 0.817 of the time; and a third of the pairs get opposite labels from their two users."""
    rows = _rows("train")
    a, b = [r["chosen"][0]["content"] for r in rows], [r["rejected"][0]["content"] for r in rows]
    pooled = PopulationJudge().prob([""] * len(a), a, b) > 0.5
    stylists = np.array([r["group"] for r in rows]) == 2
    own = np.array([r["p_user"] for r in rows]) > 0.5
    assert pooled[stylists].mean() == pytest.approx(0.575, abs=1e-3)
    assert own[stylists].mean() == pytest.approx(0.817, abs=1e-3)
    by_pair: dict[tuple[str, str], set[str]] = {}
    for r, x, y in zip(rows, a, b, strict=True):
        by_pair.setdefault((r["prompt"][0]["content"], min(x, y)), set()).add(x)
    assert np.mean([len(v) == 2 for v in by_pair.values()]) == pytest.approx(0.347, abs=1e-3)


def test_builder_is_reproducible(tmp_path):
    """Rebuilding writes the same records as the shipped files."""
    build_plural_review(None, tmp_path)
    for split in ("train", "fit", "test"):
        name = tasks.get("plural-review").splits[split]
        with gzip.open(tmp_path / name, "rt") as f:
            rebuilt = [json.loads(line) for line in f]
        assert rebuilt == _rows(split), split
