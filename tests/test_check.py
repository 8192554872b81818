"""``duelist check``: its numbers on a tiny data set, computed here independently of the checker."""

from __future__ import annotations

import json
import math

import pytest
from conftest import write_jsonl

from duelist.cli import main
from duelist.config import dump_config, load_config
from duelist.data.check import percentiles
from duelist.train.lock import RunLock

WORDS = ["great", "wonderful", "terrible", "boring", "beautiful", "bad", "movie", "acting"]


def rows() -> list[dict]:
    """10 valid pairs of growing length, then an invalid one (identical responses) and a missing field."""
    out = [
        {"prompt": "the movie was" + " very" * i, "chosen": " " + " ".join(WORDS[: 1 + i % 4]), "rejected": " bad"}
        for i in range(10)
    ]
    out.append({"prompt": "x", "chosen": " same", "rejected": " same"})
    out.append({"prompt": "y", "chosen": " a"})
    return out


def test_percentiles_nearest_rank():
    """Nearest rank: p-th percentile of 1..10 is the ⌈p/10⌉-th value; of one value, that value."""
    assert percentiles(list(range(10, 0, -1))) == {"p50": 5, "p90": 9, "p99": 10, "max": 10}
    assert percentiles([7]) == {"p50": 7, "p90": 7, "p99": 7, "max": 7}
    assert percentiles([1, 1, 1, 1, 100]) == {"p50": 1, "p90": 100, "p99": 100, "max": 100}


def _check(capsys, *args: str) -> tuple[int, dict]:
    rc = main(["check", *args, "--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_numbers_of_a_tiny_data_set(tiny_model_dir, tiny_tokenizer, tmp_path, capsys):
    """Token lengths as training counts them (BOS + prompt; response + EOS), the pairs over
    max_length = 12, and the plan: 10 pairs, batch 4, 2 epochs → ⌈2·10/4⌉ = 5 steps (= 2.0 epochs);
    warm-up round(0.4·5) = 2 steps; checkpoints every 2 steps: 2, 4 and the end, 5."""
    data = write_jsonl(tmp_path / "d.jsonl", rows())
    args = [f"model.name={tiny_model_dir}", f"data.train={data}", f"train.output_dir={tmp_path / 'run'}",
            "data.on_invalid=skip", "data.max_length=12", "train.batch_size=4", "train.epochs=2",
            "train.save_every=2", "optim.warmup=0.4"]
    rc, r = _check(capsys, *args)
    assert rc == 0
    ids = lambda s: tiny_tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    valid = rows()[:10]
    prompt = [1 + len(ids(x["prompt"])) for x in valid]
    chosen = [len(ids(x["chosen"])) + 1 for x in valid]
    rejected = [len(ids(x["rejected"])) + 1 for x in valid]
    d = r["data"]
    assert (d["records"], d["used"], d["kept"], d["pairs"], d["format"]) == (12, 12, 10, 10, "standard")
    assert [e.split(": ")[0] for e in d["invalid"]] == [f"{data}, record 11, field 'rejected'",
                                                         f"{data}, record 12, field 'rejected'"]
    assert d["lengths"] == {"prompt": percentiles(prompt), "chosen": percentiles(chosen),
                            "rejected": percentiles(rejected)}
    assert d["lengths"]["prompt"]["max"] == max(prompt) and min(prompt) == 1 + len(ids("the movie was"))
    over = sum(p + max(c, j) > 12 for p, c, j in zip(prompt, chosen, rejected, strict=True))
    assert 0 < over < 10 and d["over_limits"] == over
    assert r["plan"] == {"steps": 5, "batch_size": 4, "epochs": 2.0, "micro_batch": 4, "grad_accum": 1,
                         "warmup_steps": 2, "schedule": "linear", "checkpoints": [2, 4, 5]}
    assert r["model"]["architecture"] == "LlamaForCausalLM" and r["model"]["vocabulary"] == len(tiny_tokenizer)
    # embeddings and head 320×32 each; per layer q, o 32×32, k, v 32×16 (2 KV heads of 8), MLP 3 × 32×64, 2 norms
    layer = 2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 64 + 2 * 32
    assert r["model"]["parameters"] == r["model"]["trainable"] == 2 * 320 * 32 + 2 * layer + 32 == 39072
    assert r["output"].endswith("empty, a new run starts here") and not (tmp_path / "run").exists()

    # drop instead of truncating: the pairs over the limit leave the plan; steps = ⌈2·(10 − over)/4⌉
    rc, r = _check(capsys, *args, "data.truncation=drop", "train.epochs=2")
    assert rc == 0 and r["data"]["pairs"] == 10 - over
    assert r["plan"]["steps"] == math.ceil(2 * (10 - over) / 4)

    # on_invalid=error: the same report, every invalid record listed, exit 2
    rc = main(["check", *args, "data.on_invalid=error"])
    out = capsys.readouterr()
    assert rc == 2 and "record 11, field 'rejected': identical" in out.out and "record 12" in out.out
    assert "2 invalid record(s)" in out.err and "Traceback" not in out.err


def test_output_folder_states(tiny_model_dir, tmp_path, capsys):
    """A folder holding a run: resumable or not, and what --resume would refuse; a held folder: who holds it."""
    data = write_jsonl(tmp_path / "d.jsonl", rows()[:10])
    run = tmp_path / "run"
    args = [f"model.name={tiny_model_dir}", f"data.train={data}", f"train.output_dir={run}", "train.batch_size=2"]
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(load_config(None, args)))
    rc, r = _check(capsys, *args, "loss.beta=0.2", "train.log_every=5")
    assert rc == 0
    assert "holds a run, no checkpoint" in r["output"] and "--resume would refuse: loss.beta 0.1 → 0.2" in r["output"]
    assert "log_every" not in r["output"]
    rc, r = _check(capsys, *args)
    assert r["output"].endswith("--resume keeps its settings")
    with RunLock(run):
        rc, r = _check(capsys, *args)
        assert f"in use by pid {__import__('os').getpid()}" in r["output"]


@pytest.mark.parametrize("override, message", [
    ("train.batch_size=3", "must be divisible"),
    ("model.name=/no/such/model", "model.name='/no/such/model': cannot load"),
    ("train.reference=none", "needs a reference model"),
])
def test_config_problems_are_one_line_errors(override, message, tiny_model_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", rows()[:10])
    rc = main(["check", f"model.name={tiny_model_dir}", f"data.train={data}", "train.grad_accum=2", override])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
