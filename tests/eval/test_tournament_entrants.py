"""A tournament file that trains its entrants: equal budgets, --quick, reuse of finished runs, the games."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import standard_rows, write_jsonl

from duelist.cli import main
from duelist.config import ConfigError
from duelist.config_files import resolve_config
from duelist.eval.tournament.config import load_tournament_file
from duelist.eval.tournament.entrants import budget, entrant_configs


def test_bundled_tournament_budgets_are_equal():
    """intransitive-tournament: every entrant sees 10 × 8 = 80 prompts; every online entrant judges four
    responses per prompt (K = 4; Nash-MD 2 samples + 2 opponents; EGPO 2 samples, judged twice), 320 in all;
    offline DPO's fixed pairs are two responses per prompt, 160. Besides each entrant's learning rate, only INPO's τ
    was chosen (on training prompts, like the rates): the methods' other parameters are their defaults."""
    tf = load_tournament_file(resolve_config("intransitive-tournament"))
    cfgs = entrant_configs(tf)
    got = {name: budget(cfg) for name, cfg in cfgs.items()}
    assert got == {"offline_dpo": (80, 160), "online_dpo": (80, 320), "sppo": (80, 320), "inpo": (80, 320),
                   "nash_md": (80, 320), "egpo": (80, 320)}
    assert {c.online.judge for c in cfgs.values() if c.online} == {"intransitive"}
    # learning rates chosen on training prompts (scripts/select_tournament_lr.py); nothing else in optim differs
    assert {n: c.optim.lr for n, c in cfgs.items()} == {
        "offline_dpo": 5e-5, "online_dpo": 5e-5, "sppo": 5e-5, "inpo": 1.5e-4, "nash_md": 1.5e-4, "egpo": 4.5e-4}
    assert len({c.optim.model_copy(update={"lr": 0}).model_dump_json() for c in cfgs.values()}) == 1
    assert {n: c.online.method for n, c in cfgs.items() if c.online} == {
        "online_dpo": {"name": "online_dpo", "beta": 0.1, "samples": 4}, "sppo": {"name": "sppo", "samples": 4},
        "inpo": {"name": "inpo", "samples": 4, "tau": 0.02},
        "nash_md": {"name": "nash_md", "samples": 2, "opponents": 2}, "egpo": {"name": "egpo", "samples": 2}}
    assert cfgs["sppo"].train.output_dir == str(Path("runs/intransitive-tournament") / "sppo")


def test_quick_and_overrides():
    """--quick applies the file's quick keys to every entrant (after the entrant's own values) and to the
    tournament; command-line overrides reach one entrant."""
    path = resolve_config("intransitive-tournament")
    tf = load_tournament_file(path, ["entrants.sppo.online.method.eta=10"], quick=True)
    cfgs = entrant_configs(tf, quick=True)
    assert {budget(c)[0] for c in cfgs.values()} == {2}  # 1 step × 2 prompts
    assert tf.tournament.num_prompts == 4 and tf.tournament.output_dir.endswith("-quick")
    assert cfgs["sppo"].online.method["eta"] == 10 and cfgs["sppo"].online.method["samples"] == 4
    assert cfgs["sppo"].train.output_dir == str(Path("runs/intransitive-tournament-quick") / "sppo")


def test_bad_entrant_is_named_before_training(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text(yaml.safe_dump({"tournament": {"prompts": "positive-review:test"},
                                 "entrants": {"mine": {"loss": {"name": "nope"}}}}))
    with pytest.raises(ConfigError, match=r"entrants.mine: (.|\n)*unknown loss 'nope'"):
        entrant_configs(load_tournament_file(f))
    f.write_text(yaml.safe_dump({"tournament": {"prompts": "positive-review:test", "policies": {"a": "default"}},
                                 "entrants": {"a": {}}}))
    with pytest.raises(ConfigError, match=r"entrants\.a: also named in tournament\.policies"):
        entrant_configs(load_tournament_file(f))


def test_trains_entrants_then_plays_and_reuses_finished_runs(tmp_path, tiny_model_dir):
    """Two tiny entrants (offline DPO, online DPO) and the reference: the tournament trains both, plays the
    three, and a second call reuses both finished runs (their weights untouched) and plays again."""
    data = write_jsonl(tmp_path / "pairs.jsonl", standard_rows(8))
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"the movie {i} was"} for i in range(4)])
    out = tmp_path / "t"
    f = tmp_path / "t.yaml"
    f.write_text(yaml.safe_dump({
        "common": {"model": {"name": str(tiny_model_dir)}, "optim": {"lr": 1e-3, "warmup": 0},
                   "train": {"steps": 2, "batch_size": 2, "progress": False, "tensorboard": False}},
        "entrants": {"dpo": {"data": {"train": str(data)}},
                     "online": {"online": {"prompts": str(prompts), "judge": "lexicon", "max_new_tokens": 4}}},
        "tournament": {"policies": {"base": "reference"}, "reference": str(tiny_model_dir), "judge": "lexicon",
                       "prompts": str(prompts), "num_prompts": 4, "max_new_tokens": 4, "output_dir": str(out)},
    }))
    assert main(["tournament", str(f)]) == 0
    result = json.loads((out / "tournament.json").read_text())
    assert result["policies"] == ["dpo", "online", "base"]
    assert len(json.loads((out / "online" / "metrics.jsonl").read_text().splitlines()[-1])) > 0
    weights = {n: (out / n / "final" / "model.safetensors").stat().st_mtime_ns for n in ("dpo", "online")}
    assert main(["tournament", str(f)]) == 0
    assert {n: (out / n / "final" / "model.safetensors").stat().st_mtime_ns for n in weights} == weights
    assert json.loads((out / "tournament.json").read_text())["matrix"] == result["matrix"]  # same samples


def test_failed_entrant_is_named_and_earlier_ones_are_kept(tmp_path, tiny_model_dir, capsys):
    """Entrants train in child processes: the second one's bad record fails its child, the parent stops with
    one line naming the entrant, file, record and field (exit 2, before any games), and the first entrant's
    finished run stays."""
    good = write_jsonl(tmp_path / "pairs.jsonl", standard_rows(4))
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "the movie was", "chosen": " good"}])
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "the movie was"}])
    out = tmp_path / "t"
    f = tmp_path / "t.yaml"
    f.write_text(yaml.safe_dump({
        "common": {"model": {"name": str(tiny_model_dir)}, "optim": {"warmup": 0},
                   "train": {"steps": 1, "batch_size": 2, "progress": False, "tensorboard": False}},
        "entrants": {"first": {"data": {"train": str(good)}}, "second": {"data": {"train": str(bad)}}},
        "tournament": {"reference": str(tiny_model_dir), "judge": "lexicon", "prompts": str(prompts),
                       "output_dir": str(out)},
    }))
    assert main(["tournament", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"error: entrants.second: {bad}, record 1, field 'rejected': missing" in err
    assert (out / "first" / "final" / "model.safetensors").is_file()
    assert not (out / "tournament.json").exists()
