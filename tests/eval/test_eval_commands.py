"""The commands run end to end on tiny models and small files and write their JSON."""

import json

import pytest
from conftest import standard_rows, write_jsonl

from duelist.cli import main


def test_judges_command(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["judges"]) == 0
    out = capsys.readouterr().out
    for name in ("intransitive", "population", "noisy", "lexicon", "fan", "editor", "critic"):
        assert name in out


def test_bon_command_on_a_tiny_model(tiny_model_dir, tmp_path):
    """N = 2 on 2 prompts: the KL bound log 2 − ½ and the BoN win-rate bound 2/3 are reported."""
    out = tmp_path / "bon"
    args = ["bon", "--model", str(tiny_model_dir), "--n", "2", "--num-prompts", "2", "--max-new-tokens", "4"]
    assert main([*args, "--out", str(out)]) == 0
    res = json.loads((out / "bon.json").read_text())
    assert res["kl_bound"] == pytest.approx(0.19314718) and res["win_rate_bound"] == pytest.approx(2 / 3)
    assert 0 <= res["kl_plugin"] <= res["kl_bound"]


def test_measure_accuracy_reference_is_half(tiny_model_dir, tmp_path):
    """The reference evaluated against itself scores exactly 0.5; the reference cache is written and reused."""
    data = write_jsonl(tmp_path / "pairs.jsonl", standard_rows(6))
    cache = tmp_path / "ref.npz"
    common = ["measure", "accuracy", str(tiny_model_dir), "--data", str(data), "--reference", str(tiny_model_dir)]
    for _ in range(2):
        assert main([*common, "--cache", str(cache), "--out", str(tmp_path)]) == 0
        res = json.loads((tmp_path / "accuracy.json").read_text())
        assert res["accuracy"]["mean"] == 0.5 and res["pairs"] == 6
    assert cache.is_file()


def test_measure_diagnose_and_rerank(tmp_path):
    rows = [{"step": s, "logps/chosen": -10.0 - s, "logps/rejected": -12.0 - 3 * s} for s in range(1, 7)]
    run = tmp_path / "run"
    run.mkdir()
    write_jsonl(run / "metrics.jsonl", rows)
    assert main(["measure", "diagnose", str(run), "--out", str(tmp_path / "d")]) == 0
    d = json.loads((tmp_path / "d" / "diagnostics.json").read_text())
    assert d["trajectory"]["rejected_change"] == pytest.approx(-9.0)  # mean of steps 4–6 − mean of steps 1–3
    assert (tmp_path / "d" / "trajectories.png").is_file()
    scores = write_jsonl(
        tmp_path / "s.jsonl",
        [
            {
                "question_id": 0,
                "preference": [1, 1, 1, 0, 0, 0],
                "log_g": [[-1.0, -5, -5, -5], [-5, -1, -1, -1]],
                "log_d": [[-0.1, -2.0], [-2.0, -0.1], [-2.0, -0.1], [-2.0, -0.1]],
                "tokens": [3, 3, 3, 3],
            }
        ],
    )
    assert main(["rerank", "--scores", str(scores), "--iterations", "100", "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "rerank.json").read_text())
    assert r["er-d"]["pairwise"] == 1.0 and r["generator"]["pairwise"] == 1.0
