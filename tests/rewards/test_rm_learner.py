"""The reward-model learner on the trainer's core: hidden states read at the right tokens in every layout, the step
is the kind's loss, accumulation and resume are exact, the saved folder scores as training did, the frozen
backbone trains the head alone, MaxMin's E-step runs between epochs, and configs are checked."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import standard_rows, write_jsonl
from helpers import read_metrics, tiny_config

from duelist.config import ConfigError, load_config
from duelist.data.collate import LAYOUTS, collate_pairs
from duelist.models.heads import last_token_states
from duelist.models.logprobs import split_lm
from duelist.rewards.maxmin import purity
from duelist.rewards.model import load_reward_model
from duelist.train.reward import RewardSource
from duelist.train.run import Run


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DUELIST_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def data(tmp_path):
    return write_jsonl(tmp_path / "pairs.jsonl", standard_rows(16))


def _cfg(tiny_model_dir, data, out, *more):
    return tiny_config(tiny_model_dir, data, out, "reward_model.kind.name=bt", *more)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_hidden_states_are_read_at_each_last_token(layout, tiny_model_dir, data, tmp_path):
    """In every layout, the hidden state the head reads is the backbone's at the response's last token (EOS) and
    at the prompt's last token, as one unpadded sequence gives them (to 1e-5)."""
    run = Run(_cfg(tiny_model_dir, data, tmp_path / "r", f"train.layout={layout}"))
    pairs = run.source.pairs[:5]
    batch = collate_pairs(pairs, range(5), run.learner.pad_id, layout)
    hidden, prompt = run.learner.net.hidden(batch.tensors())
    backbone = split_lm(run.learner.net.models[0])[0]
    for i, p in enumerate(pairs):
        for side, resp in ((0, p.chosen[:-1]), (1, p.rejected[:-1])):  # without the placeholder
            seq = p.prompt + resp
            ref = last_token_states(backbone, [seq], [[len(seq) - 1, len(p.prompt) - 1]], 0)[0]
            assert torch.allclose(hidden[side * 5 + i, 0], ref[0], atol=1e-5)
            assert torch.allclose(prompt[side * 5 + i], ref[1], atol=1e-5)


def test_first_step_loss_is_the_kinds_loss(tiny_model_dir, data, tmp_path):
    """Step 1's logged loss and accuracy are the BT loss and accuracy of the head on the batch, computed apart."""
    run = Run(_cfg(tiny_model_dir, data, tmp_path / "r"))
    idx = run.source.plan.micro_batches(0)[0]
    with torch.no_grad():
        w, l, _ = run.learner.outputs(run.source.pairs, idx)
    margin = (w["rewards"] - l["rewards"])[:, 0]
    m = run.step(0)
    assert m["loss"] == pytest.approx(float(torch.nn.functional.softplus(-margin).mean()), abs=1e-6)
    assert m["rewards/accuracy"] == pytest.approx(float((margin > 0).float().mean()), abs=1e-9)


def test_accumulation_equals_one_big_batch(tiny_model_dir, data, tmp_path):
    runs = []
    for accum in (1, 4):
        r = Run(_cfg(tiny_model_dir, data, tmp_path / f"a{accum}", f"train.grad_accum={accum}", "train.steps=2"))
        r.fit()
        runs.append(r.learner.head.state_dict())
    assert max(float((runs[0][k] - runs[1][k]).abs().max()) for k in runs[0]) <= 1e-6


def _plural_rows() -> list[dict]:
    """Four users: 0 and 1 label as the standard rows, 2 and 3 the other way round (two planted groups)."""
    out = []
    for u in range(4):
        for r in standard_rows(8):
            flip = u >= 2
            out.append({**r, "chosen": r["rejected"] if flip else r["chosen"],
                        "rejected": r["chosen"] if flip else r["rejected"], "user": 10 + u})
    return out


def test_resume_equals_uninterrupted_with_refitted_groups(tiny_model_dir, tmp_path):
    """MaxMin (head buffers: the users' groups) stopped after 3 of 6 steps and resumed ends where an uninterrupted
    run ends: same losses, same weights, same groups."""
    data = write_jsonl(tmp_path / "plural.jsonl", _plural_rows())
    more = ("reward_model.kind.name=maxmin", "train.steps=6", "train.batch_size=8")
    full = Run(_cfg(tiny_model_dir, data, tmp_path / "full", *more))
    full.fit()
    part = Run(_cfg(tiny_model_dir, data, tmp_path / "part", *more))
    for s in range(3):
        part.step(s)
    part.learner.save(3, part.source.state())
    part.close()
    resumed = Run(_cfg(tiny_model_dir, data, tmp_path / "part", *more), resume=True)
    assert resumed.start == 3
    resumed.fit()
    a, b = full.learner.net.state_dict(), resumed.learner.net.state_dict()
    assert max(float((a[k].double() - b[k].double()).abs().max()) for k in a) <= 1e-6
    assert torch.equal(full.learner.head.assignment, resumed.learner.head.assignment)
    assert read_metrics(tmp_path / "full")[-1]["loss"] == pytest.approx(read_metrics(tmp_path / "part")[-1]["loss"],
                                                                         abs=1e-6)


def test_saved_folder_scores_as_training_does(tiny_model_dir, data, tmp_path):
    """The folder's P(chosen ≻ rejected) on the training texts equals σ(r_w − r_l) of the trained net (1e-5); the
    card has the normalisation of the training rewards and the text prompt format."""
    run = Run(_cfg(tiny_model_dir, data, tmp_path / "r"))
    result = run.fit()
    rm = load_reward_model(result.final_dir)
    rows = standard_rows(16)
    p = rm.prob([r["prompt"] for r in rows], [r["chosen"] for r in rows], [r["rejected"] for r in rows])
    w, l = run.learner.score_all(run.source.pairs)
    expected = torch.sigmoid(w["rewards"][:, 0] - l["rewards"][:, 0]).double().numpy()
    assert abs(p - expected).max() <= 1e-5
    both = torch.cat([w["rewards"], l["rewards"]])[:, 0].double()
    card = json.loads((result.final_dir / "duelist.json").read_text())
    assert card["prompt_format"] == "text"
    assert card["normalisation"]["mean"][0] == pytest.approx(float(both.mean()), abs=1e-6)
    assert card["normalisation"]["std"][0] == pytest.approx(float(both.std(correction=0)), abs=1e-6)
    assert card["training_data"]["pairs"] == 16


def test_frozen_backbone_trains_the_head_alone(tiny_model_dir, data, tmp_path):
    """``backbone: frozen``: the step-1 loss equals the trained backbone's (same forward pass), the backbone is
    unchanged after training, the head is not, and only the head is checkpointed."""
    trained = Run(_cfg(tiny_model_dir, data, tmp_path / "t"))
    frozen = Run(_cfg(tiny_model_dir, data, tmp_path / "f", "reward_model.backbone=frozen"))
    before = {k: v.clone() for k, v in frozen.learner.net.state_dict().items()}
    assert frozen.step(0)["loss"] == pytest.approx(trained.step(0)["loss"], abs=1e-6)
    frozen.fit()
    after = frozen.learner.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("models."))
    assert not torch.equal(before["head.value.0.weight"], after["head.value.0.weight"])
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "f/checkpoints/step-000004/model.safetensors")
    assert sorted(saved) == ["head.value.0.weight"]
    (cached,) = (tmp_path / "cache/features").glob("*.safetensors")
    gpm = ("reward_model.backbone=frozen", "reward_model.kind.name=gpm")
    again = Run(_cfg(tiny_model_dir, data, tmp_path / "g", *gpm))
    assert torch.equal(again.learner._cached(again.source.pairs)[0], load_file(cached)["chosen"])


def test_maxmin_recovers_planted_groups(tiny_model_dir, tmp_path):
    """Two planted groups of users with opposite labels: the E-step between epochs puts them apart (purity 1)."""
    data = write_jsonl(tmp_path / "plural.jsonl", _plural_rows())
    run = Run(_cfg(tiny_model_dir, data, tmp_path / "m", "reward_model.kind.name=maxmin",
                   "reward_model.backbone=frozen", "train.steps=40", "optim.lr=3e-2"))
    final = run.fit().final_dir
    assert purity(run.learner.head.assignment, [0, 0, 1, 1]) == 1.0
    assert any("maxmin/reassigned" in m for m in read_metrics(tmp_path / "m"))
    # held-out users fitted from their pairs join the group of the users who label like them
    rm = load_reward_model(final)
    rows = [{**r, "user": 98} for r in _plural_rows()[:8]] + [{**r, "user": 99} for r in _plural_rows()[16:24]]
    new = rm.fit_users([r["prompt"] for r in rows], [r["chosen"] for r in rows], [r["rejected"] for r in rows],
                       [r["user"] for r in rows])
    assert new == [98, 99]
    groups = rm.head.assignment.tolist()
    assert groups[4:] == [groups[0], groups[2]]


def test_label_flips_reach_the_training_pairs(tiny_model_dir, data, tmp_path):
    cfg = _cfg(tiny_model_dir, data, tmp_path / "r", "data.flip_rate=0.25")
    from duelist.models.load import load_tokenizer

    src = RewardSource(cfg, _Acc(), load_tokenizer(cfg.model))
    assert sum(p.extra["flipped"] for p in src.pairs) == 4


class _Acc:
    num_processes, process_index, is_main_process = 1, 0, True


def test_config_errors(tiny_model_dir, data, tmp_path):
    with pytest.raises(ConfigError, match="unknown model kind 'nope'; valid kinds: bt, crm, gpm"):
        _cfg(tiny_model_dir, data, tmp_path, "reward_model.kind.name=nope")
    with pytest.raises(ConfigError, match="not in a loss section"):
        _cfg(tiny_model_dir, data, tmp_path, "loss.name=ipo")
    with pytest.raises(ConfigError, match="exclusive"):
        load_config(None, ["reward_model.kind.name=bt", "online.judge=lexicon"])
    with pytest.raises(ConfigError, match=r"remove model\.lora"):
        load_config(None, ["reward_model.backbone=frozen", "model.lora.r=4"])
    cfg = load_config(None, ["reward_model.kind.name=gpm", "reward_model.kind.k=3"])
    assert cfg.reward_model.kind == {"name": "gpm", "k": 3}


def test_pal_fits_a_held_out_user_from_their_pairs(tiny_model_dir, tmp_path):
    """PAL-A trained on four users; a new user's mixture weights alone are fitted on their pairs (the head's other
    weights stay as trained), after which the model scores for them."""
    data = write_jsonl(tmp_path / "plural.jsonl", _plural_rows())
    run = Run(_cfg(tiny_model_dir, data, tmp_path / "p", "reward_model.kind.name=pal-a", "reward_model.kind.dim=8",
                   "reward_model.backbone=frozen", "train.steps=10", "optim.lr=1e-2"))
    rm = load_reward_model(run.fit().final_dir)
    before = {k: v.clone() for k, v in rm.head.state_dict().items()}
    rows = [{**r, "user": 77} for r in _plural_rows()[16:24]]
    assert rm.fit_users([r["prompt"] for r in rows], [r["chosen"] for r in rows], [r["rejected"] for r in rows],
                        [77] * 8) == [77]
    after = rm.head.state_dict()
    assert after["users.logits"].shape == (5, 2)
    assert torch.equal(after["users.logits"][:4], before["users.logits"])
    assert all(torch.equal(before[k], after[k]) for k in before if k != "users.logits")
    assert rm.prob([r["prompt"] for r in rows], [r["chosen"] for r in rows], [r["rejected"] for r in rows],
                   [77] * 8).shape == (8,)


def test_crm_on_a_frozen_backbone_runs_it_once(tiny_model_dir, data, tmp_path):
    """CRM's two backbones, frozen, are one module run once; the two columns read the same features, and the folder
    saves both backbones (identical) and scores like the trained net."""
    run = Run(_cfg(tiny_model_dir, data, tmp_path / "c", "reward_model.kind.name=crm", "reward_model.backbone=frozen"))
    assert run.learner.net.models[0] is run.learner.net.models[1]
    hw, _, _ = run.learner._cached(run.source.pairs)
    assert hw.shape == (16, 2, 32) and torch.equal(hw[:, 0], hw[:, 1])
    rm = load_reward_model(run.fit().final_dir)
    assert rm.backbones[0] is rm.backbones[1]  # identical folders load (and run) once
    rows = standard_rows(16)
    p = rm.prob([r["prompt"] for r in rows], [r["chosen"] for r in rows], [r["rejected"] for r in rows])
    w, l = run.learner.score_all(run.source.pairs)
    assert abs(p - torch.sigmoid((w["rewards"] - l["rewards"]).mean(1)).double().numpy()).max() <= 1e-5


def test_two_processes_equal_one(tiny_model_dir, data, tmp_path):
    """torchrun --nproc_per_node 2 (gloo), global batch 4, trains the same reward model as one process."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "DUELIST_CACHE": str(tmp_path / "cache")}
    args = [f"model.name={tiny_model_dir}", f"data.train={data}", "train.steps=4", "train.batch_size=4",
            "reward_model.kind.name=bt", "optim.lr=1e-3", "optim.warmup=0", "train.progress=false",
            "train.tensorboard=false", "train.threads=1"]
    one = subprocess.run([sys.executable, "-m", "duelist.cli", "train", *args, f"train.output_dir={tmp_path}/one"],
                         env=env, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29531", "-m", "duelist.cli", "train", *args, f"train.output_dir={tmp_path}/two"],
                         env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [m["loss"] for m in a] == pytest.approx([m["loss"] for m in b], abs=1e-5)
    from safetensors.torch import load_file

    ha, hb = load_file(tmp_path / "one/final/head.safetensors"), load_file(tmp_path / "two/final/head.safetensors")
    assert max(float((ha[k] - hb[k]).abs().max()) for k in ha) <= 1e-5


def test_a_trained_model_judges_an_online_run_from_config(tiny_model_dir, data, tmp_path):
    """``online.judge: rm:<folder>`` of a trained BT model: an online DPO run takes its rounds, its judge reward is the
    folder's standardised reward; the prompts come from implicit-prompt pairs (HH style, no ``prompt`` field)."""
    final = Run(_cfg(tiny_model_dir, data, tmp_path / "rm")).fit().final_dir
    hh = write_jsonl(tmp_path / "hh.jsonl", [
        {"chosen": f"\n\nHuman: the movie {i} was\n\nAssistant: great", "rejected": f"\n\nHuman: the movie {i} was"
         "\n\nAssistant: bad"} for i in range(8)])
    cfg = load_config(None, [
        f"model.name={tiny_model_dir}", f"online.prompts={hh}", f"online.judge=rm:{final}", "online.max_new_tokens=6",
        "online.method.name=online_dpo", f"train.output_dir={tmp_path / 'online'}", "train.steps=2",
        "train.batch_size=4", "optim.lr=1e-3", "optim.warmup=0", "train.progress=false", "train.tensorboard=false",
    ])
    run = Run(cfg)
    assert run.source.prompts[0].text.endswith("the movie 0 was\n\nAssistant:")
    history = run.fit().history
    assert len(history) == 2 and all(math.isfinite(m["loss"]) for m in history)
    assert run.source.judge.name == f"rm:{final}"
