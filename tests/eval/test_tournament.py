"""``duelist tournament``: the head-to-head win-rate matrix, worst case, ranking and outputs.

Policies whose answers are known: tiny Llama models rewired to emit one token over and over (every layer's
output projections zeroed, so the last hidden state is the normalised embedding, all embeddings equal,
and the output row of the chosen token 100 logits above the rest: probability 1 − 319·e^{-100}). A judge
that reads which token a text repeats and answers from a fixed table then makes every per-prompt win
fraction a known number.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import make_model, write_jsonl

from duelist.cli import main
from duelist.config import ConfigError
from duelist.eval.stats import wilson_interval
from duelist.eval.tournament import run as trun
from duelist.eval.tournament.config import TournamentConfig, load_tournament_config
from duelist.eval.tournament.run import run_tournament
from duelist.eval.winrate import win_rate
from duelist.judges import get_judge
from duelist.judges.base import Judge

PROMPTS = ["the movie was", "a terrible film", "I loved every minute"]
JSON_KEYS = {"policies", "matrix", "lower", "upper", "worst_case", "mean_win_rate", "ranking", "equilibrium",
             "paths", "judge", "prompts", "num_prompts", "samples_per_prompt", "max_new_tokens", "temperature",
             "seed", "examples", "seconds"}


def one_token_model(tokenizer, token: int, path: Path) -> Path:
    model = make_model(len(tokenizer), seed=token)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.fill_(1.0)
        model.lm_head.weight.zero_()
        model.lm_head.weight[token] = 100.0 / model.config.hidden_size
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


class TableJudge(Judge):
    """P(a ≻ b) = table[marker(a)][marker(b)], the marker being the token a text repeats."""

    name = "table"

    def __init__(self, markers: list[str], table: np.ndarray):
        self.markers, self.table = markers, table
        self.calls: list[int] = []

    def _index(self, text: str) -> int:
        return next(i for i, m in enumerate(self.markers) if text == m * (len(text) // len(m)))

    def prob(self, prompts, a, b):
        self.calls.append(len(a))
        return np.array([self.table[self._index(x), self._index(y)] for x, y in zip(a, b, strict=True)])


@pytest.fixture(scope="module")
def one_token_policies(tmp_path_factory, tiny_tokenizer):
    """Three one-token policies ('gre', 'ing', 'ad' repeated); the third saved as a run folder's final/."""
    root = tmp_path_factory.mktemp("one-token")
    tokens = [tiny_tokenizer.convert_tokens_to_ids(t) for t in ("gre", "ing", "ad")]
    (root / "run_c").mkdir()
    places = (root / "a", root / "b", root / "run_c" / "final")
    dirs = [one_token_model(tiny_tokenizer, t, d) for t, d in zip(tokens, places, strict=True)]
    markers = [tiny_tokenizer.decode([t]) for t in tokens]
    prompts = write_jsonl(root / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    return dirs, markers, prompts, root


def test_hand_computed_matrix_worst_case_ranking_and_json(one_token_policies, tmp_path, monkeypatch):
    """Judge table T (a cycle, one sure win): great ≻ ing always (1.0), ing ≻ ad 0.9, ad ≻ great 0.7.

    Each policy's samples all repeat its token, so every per-prompt win fraction of i over j is T[i, j]:
    the matrix is T. Intervals: a constant fractional per-prompt value has zero spread, so the t-interval is
    the point itself; the 1.0 entry is 0/1 on all 3 prompts, so it gets the Wilson interval for 3 of 3,
    lower end n/(n + z²) = 3/(3 + 1.96²) = 0.4385, and the 0.0 entry its mirror [0, 0.5615].
    Worst cases: great 0.3 (vs ad), ing 0.0 (vs great), ad 0.1 (vs ing); ranking great, ad, ing.
    Equilibrium: for a 3×3 skew S = T − ½ the kernel is (S₁₂, S₂₀, S₀₁) = (0.4, 0.2, 0.5)/1.1.
    The entry 'base' = reference = the first model has identical samples to 'great': ½ against it, and it is
    not sampled again (3 samplings for 4 entries); the judge is called once, on 6 pairs of entries × 3
    prompts × 2 × 2 samples = 72 pairs."""
    dirs, markers, prompts, root = one_token_policies
    table = np.array([[0.5, 1.0, 0.3], [0.0, 0.5, 0.9], [0.7, 0.1, 0.5]])
    judge = TableJudge(markers, table)
    calls = []
    real_sample = trun.sample
    monkeypatch.setattr(trun, "sample", lambda *a, **k: calls.append(1) or real_sample(*a, **k))
    tcfg = TournamentConfig(prompts=str(prompts), num_prompts=3, samples_per_prompt=2, max_new_tokens=3,
                            reference=str(dirs[0]), output_dir=str(tmp_path / "out"))
    policies = {"great": str(dirs[0]), "ing": str(dirs[1]), "ad": str(root / "run_c"), "base": "reference"}
    out = run_tournament(policies, tcfg, judge=judge)

    assert len(calls) == 3 and judge.calls == [6 * 3 * 4]
    assert out["paths"]["ad"] == str(root / "run_c" / "final") and out["paths"]["base"] == str(dirs[0])
    M, lo, hi = np.array(out["matrix"]), np.array(out["lower"]), np.array(out["upper"])
    expected = np.full((4, 4), 0.5)
    expected[:3, :3] = table
    expected[:3, 3] = table[:, 0]
    expected[3, :3] = table[0, :]
    assert np.abs(M - expected).max() <= 1e-15
    wl = 3 / (3 + 1.959963984540054**2)
    assert wl == pytest.approx(wilson_interval(3, 3).lo, rel=1e-12) and wl == pytest.approx(0.43850, abs=1e-5)
    sure = (expected == 1.0) | (expected == 0.0)
    assert np.allclose(lo[~sure], expected[~sure], atol=1e-15) and np.allclose(hi[~sure], expected[~sure], atol=1e-15)
    assert lo[0, 1] == pytest.approx(wl, rel=1e-12) and hi[0, 1] == 1.0
    assert lo[1, 0] == pytest.approx(0.0, abs=1e-15) and hi[1, 0] == pytest.approx(1 - wl, rel=1e-12)
    assert out["worst_case"]["great"] == {"win_rate": 0.3, "lower": 0.3, "upper": 0.3, "opponent": "ad"}
    assert out["worst_case"]["ing"]["win_rate"] == 0.0 and out["worst_case"]["ing"]["opponent"] == "great"
    assert out["worst_case"]["ad"]["win_rate"] == pytest.approx(0.1, abs=1e-15)
    # great and base tie on worst case (0.3) and on mean win-rate (1.0 + 0.3 + 0.5) / 3; the order keeps entry order
    assert out["ranking"] == ["great", "base", "ad", "ing"]
    assert out["mean_win_rate"]["great"] == pytest.approx(1.8 / 3, rel=1e-12)
    eq = out["equilibrium"]
    assert eq["great"] + eq["base"] == pytest.approx(4 / 11, abs=1e-9)
    assert [eq["ing"], eq["ad"]] == pytest.approx([2 / 11, 5 / 11], abs=1e-9)
    saved = json.loads((tmp_path / "out" / "tournament.json").read_text())
    assert set(saved) == JSON_KEYS and saved["policies"] == ["great", "ing", "ad", "base"]
    assert (tmp_path / "out" / "tournament.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_random_tiny_models_under_a_real_judge(tiny_model_dir, tiny_tokenizer, tmp_path, monkeypatch, capsys):
    """Two random tiny Llamas (seeds 0 and 1) and the reference (= the first), intransitive judge (its
    brevity and variety criteria separate random texts; sentiment mostly ties on them), through the
    command line with a YAML file and an override. Checks that hold for any samples: M + Mᵀ = 1 off the
    diagonal and ½ on it (exactly), lower ≤ M ≤ upper with lower[j, i] = 1 − upper[i, j], the entry
    'reference' identical to the model it stands for (½ against it, same row elsewhere), and each entry of
    M equal to eval.winrate.win_rate on the same samples (the per-prompt K × K mean, interval over prompts)."""
    other = tmp_path / "tiny-1"
    make_model(len(tiny_tokenizer), seed=1).save_pretrained(other)
    tiny_tokenizer.save_pretrained(other)
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"the movie {i} was"} for i in range(6)])
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump({"tournament": {
        "policies": {"tiny0": str(tiny_model_dir), "tiny1": str(other), "ref": "reference"},
        "reference": str(tiny_model_dir), "judge": "intransitive", "prompts": str(prompts), "num_prompts": 4,
        "samples_per_prompt": 3, "max_new_tokens": 8, "output_dir": str(tmp_path / "out")}}, sort_keys=False))
    seen: dict[str, list[list[str]]] = {}
    real = trun.sample_policy
    monkeypatch.setattr(trun, "sample_policy", lambda m, p, t, label: seen.setdefault(label, real(m, p, t, label)))
    assert main(["tournament", str(cfg), "tournament.num_prompts=5"]) == 0
    out = json.loads((tmp_path / "out" / "tournament.json").read_text())
    assert set(seen) == {"tiny0", "tiny1"} and out["num_prompts"] == 5 and out["samples_per_prompt"] == 3
    M, lo, hi = np.array(out["matrix"]), np.array(out["lower"]), np.array(out["upper"])
    off = ~np.eye(3, dtype=bool)
    assert np.all((M + M.T)[off] == 1.0) and np.all(np.diag(M) == 0.5)
    assert np.all(lo <= M + 1e-12) and np.all(hi + 1e-12 >= M)
    assert np.allclose(lo[off], (1 - hi.T)[off], atol=1e-12)
    assert M[0, 2] == 0.5 and M[1, 0] == M[1, 2]
    texts = [f"the movie {i} was" for i in range(5)]
    est, _ = win_rate(get_judge("intransitive"), texts, seen["tiny0"], seen["tiny1"])
    assert M[0, 1] == pytest.approx(est.mean, abs=1e-12)
    assert (lo[0, 1], hi[0, 1]) == pytest.approx((est.lo, est.hi), abs=1e-12)
    assert "tiny0" in capsys.readouterr().out


def test_config_errors_come_before_any_sampling(tmp_path, tiny_model_dir, monkeypatch):
    """Bad input is one clear error naming the key, and nothing is sampled: an unknown key lists the valid
    keys; a policy path that is neither a run folder nor a model directory names the entry; one policy is
    not a tournament; a file without a 'tournament:' section says so. With task prompts the judge defaults
    to the task's oracle (positive-review → lexicon)."""
    monkeypatch.setattr(trun, "sample_policy", lambda *a: pytest.fail("sampled before the config was checked"))
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump({"tournament": {"prompts": "positive-review:test", "judgee": "lexicon"}}))
    with pytest.raises(ConfigError, match=r"tournament\.judgee: unknown key \(valid keys here: policies, "):
        load_tournament_config(cfg)
    cfg.write_text(yaml.safe_dump({"model": {}}))
    with pytest.raises(ConfigError, match="needs a top-level 'tournament:' section"):
        load_tournament_config(cfg)
    tcfg = TournamentConfig(prompts="positive-review:test", output_dir=str(tmp_path / "o"))
    with pytest.raises(ConfigError, match=r"tournament\.policies\.b: '.*nowhere' is not a run folder"):
        run_tournament({"a": str(tiny_model_dir), "b": str(tmp_path / "nowhere")}, tcfg)
    with pytest.raises(ConfigError, match="at least 2 policies"):
        run_tournament({"a": str(tiny_model_dir)}, tcfg)
    assert not (tmp_path / "o").exists()
    from duelist.eval.tournament.config import judge_name

    assert judge_name(tcfg) == "lexicon"
    cfg.write_text(yaml.safe_dump({"tournament": {"prompts": "p.jsonl", "policies": {"a": "x"}}}))
    with pytest.raises(ConfigError, match=r"tournament\.judge is required"):
        judge_name(load_tournament_config(cfg))
