"""``duelist eval``'s report on a tiny run: every sample kept, the frontier over the run's checkpoints (reference,
intermediate checkpoints, final) with on-task shares and win-rates, and a few pairs printed."""

import json

import numpy as np
import pytest
from conftest import standard_rows, write_jsonl
from helpers import tiny_config

from duelist.eval.frontier import point_of_samples, run_checkpoints
from duelist.eval.on_task import OnTaskClassifier
from duelist.eval.report import print_pairs, sample_rows
from duelist.eval.run import evaluate
from duelist.eval.winrate import win_rate
from duelist.judges import RewardJudge
from duelist.train.run import train

LENGTH = RewardJudge(lambda p, r: np.array([len(t) for t in r], dtype=float), name="length")


def test_point_of_samples_by_hand():
    """Two prompts × 2 samples: reward = mean length, KL = mean log-ratio, on-task share, win-rate."""
    clf = OnTaskClassifier({"film": 1.0, "help": -1.0})
    texts = ["film", "help me", "a film", "xx"]
    p = point_of_samples(
        "p", ["x", "y"], texts, np.array([1.0, 3, 2, 0]), np.zeros(4), LENGTH, 2, clf, ["a", "b", "c", "d"]
    )
    assert (p.reward.mean, p.kl.mean, p.on_task.mean) == (pytest.approx(4.75), pytest.approx(1.5), 0.5)
    assert (
        p.win_rate.mean == win_rate(LENGTH, ["x", "y"], [texts[:2], texts[2:]], [["a", "b"], ["c", "d"]])[0].mean == 1.0
    )
    assert set(p.as_dict()) == {"label", "reward", "kl", "on_task", "win_rate"}
    assert set(point_of_samples("q", ["x"], ["a"], np.zeros(1), np.zeros(1), LENGTH, 1).as_dict()) == {
        "label",
        "reward",
        "kl",
    }


def test_sample_rows_and_printed_pairs(capsys):
    rows = sample_rows(["x", "y"], ["a", "b", "c", "[d]"], ["e", "f", "g", "h"], 2, {"reward_policy": np.arange(4.0)})
    assert rows[3] == {
        "prompt_index": 1,
        "sample": 1,
        "prompt": "y",
        "policy": "[d]",
        "reference": "h",
        "reward_policy": 3.0,
    }
    print_pairs(rows, n=4)
    out = capsys.readouterr().out
    assert "4 random policy/reference pairs" in out and "[d]" in out and "reward 3.000" in out


def test_evaluate_keeps_every_sample_and_the_frontier(tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    data = write_jsonl(tmp_path / "pairs.jsonl", standard_rows(16))
    cfg = tiny_config(
        tiny_model_dir,
        data,
        run,
        "train.steps=3",
        "train.save_every=1",
        "train.keep_checkpoints=5",
        "eval.prompts=positive-review:test",
        "eval.judge=lexicon",
        "eval.num_prompts=5",
        "eval.max_new_tokens=4",
        "eval.batch_size=8",
    )
    train(cfg)
    assert [p.name for p in run_checkpoints(run)] == ["step-000001", "step-000002"]
    res = evaluate(cfg, run / "final", run, metrics_file=run / "metrics.jsonl", run_dir=run)
    rows = [json.loads(l) for l in (run / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and [(r["prompt_index"], r["sample"]) for r in rows[:3]] == [(0, 0), (0, 1), (1, 0)]
    assert rows[0]["prompt"].startswith("Movie review: ")
    assert set(rows[0]) >= {
        "policy",
        "reference",
        "reward_policy",
        "reward_reference",
        "on_task_policy",
        "log_ratio_policy",
    }
    assert np.mean([r["reward_policy"] for r in rows]) == pytest.approx(res["reward_policy"]["mean"])
    assert np.mean([r["log_ratio_policy"] for r in rows]) == pytest.approx(res["kl"]["mean"])
    front = res["frontier"]
    assert [p["label"] for p in front] == ["reference", "step 1", "step 2", "final"]
    assert front[0]["kl"]["mean"] == 0.0 and "win_rate" not in front[0]
    assert front[-1]["win_rate"] == res["win_rate"] and front[-1]["kl"] == res["kl"]
    assert front[-1]["on_task"] == res["on_task_policy"] and front[0]["on_task"] == res["on_task_reference"]
    assert json.loads((run / "eval.json").read_text())["frontier"] == front
    assert (run / "eval.png").stat().st_size > 10_000
    assert "3 random policy/reference pairs" in capsys.readouterr().out
    no_front = evaluate(
        cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"frontier": False})}),
        run / "final",
        tmp_path / "e2",
        run_dir=run,
    )
    assert [p["label"] for p in no_front["frontier"]] == ["reference", "final"]
