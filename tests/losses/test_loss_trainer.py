"""Any registered loss trains from config alone; the trainer supplies exactly what the loss asks for."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_model, standard_rows, write_jsonl
from helpers import accumulate, tiny_config

import duelist.models.reference as reference
from duelist.data.sources import DataError
from duelist.losses import LossConfigError, registry
from duelist.train.run import Run, train

# what each loss needs beyond its name to train on the tiny task (``{rm}`` is a second tiny model)
OVERRIDES = {"tgdpo": ["loss.reward_model={rm}"]}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rows = standard_rows(16)
    for i, r in enumerate(rows):
        r.update(p_win=0.55 + 0.02 * i, p_lose=0.45 - 0.02 * i, score_chosen=0.5, score_rejected=-0.1 * i,
                 prev_chosen_logps=-20.0 - i, prev_rejected_logps=-21.0 + 0.5 * i)
    return write_jsonl(tmp_path_factory.mktemp("data") / "pairs.jsonl", rows)


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory, tiny_tokenizer):
    d = tmp_path_factory.mktemp("tiny-rm")
    make_model(len(tiny_tokenizer), seed=7).save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """One reference cache for the module: every loss trains on the same pairs and micro-batches."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DUELIST_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def trainer(model_dir, data, out, *overrides):
    return Run(tiny_config(model_dir, data, out, "train.save_final=false", *overrides))


PAIR_LOSSES = sorted(n for n, s in registry().items() if s.inputs == "pairs")
POINTWISE = sorted(n for n, s in registry().items() if s.inputs == "samples")


@pytest.mark.parametrize("name", POINTWISE)
def test_a_pointwise_loss_on_a_data_set_of_pairs_is_a_clear_error(name, tiny_model_dir, data, tmp_path):
    with pytest.raises(LossConfigError, match="single sampled responses"):
        train(tiny_config(tiny_model_dir, data, tmp_path / name, f"loss.name={name}"))


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_every_loss_trains_from_config(name, tiny_model_dir, rm_dir, data, tmp_path):
    """Two optimizer steps from ``loss.name=<name>`` alone: finite losses, metrics and gradients."""
    extra = [o.format(rm=rm_dir) for o in OVERRIDES.get(name, [])]
    res = train(tiny_config(tiny_model_dir, data, tmp_path / name, f"loss.name={name}", "train.steps=2",
                            "train.save_final=false", *extra))  # fmt: skip
    assert len(res.history) == 2
    for m in res.history:
        assert all(math.isfinite(v) for v in m.values()), m
        assert m["grad_norm"] > 0


def test_reference_free_loss_skips_every_reference_computation(tiny_model_dir, data, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a reference was computed for a reference-free loss")

    monkeypatch.setattr(reference, "precompute", boom)
    monkeypatch.setattr(reference.LiveReference, "logps", boom)
    t = trainer(tiny_model_dir, data, tmp_path / "simpo", "loss.name=simpo", "train.steps=2")
    assert t.source.ref_mode == "none" and type(t.source.reference) is reference.Reference
    res = t.fit()
    assert "log_ratio/mean" not in res.history[0] and all(math.isfinite(m["loss"]) for m in res.history)


def test_tdpo_uses_one_policy_and_one_reference_forward_per_micro_batch(tiny_model_dir, data, tmp_path):
    """TDPO switches the reference to live; per micro-batch the policy backbone runs once (log-probs and
    KL from one pass, chosen and rejected together) and the reference backbone once, under no_grad.
    At step 1 policy = reference, so every token KL is exactly 0 and the loss is log 2."""
    t = trainer(tiny_model_dir, data, tmp_path / "tdpo", "loss.name=tdpo2", "train.grad_accum=2", "train.steps=2")
    assert t.source.ref_mode == "live" and isinstance(t.source.reference, reference.LiveReference)
    calls = {"policy": 0, "reference": 0, "ref_grad": []}
    t.learner.model.model.register_forward_hook(lambda *a: calls.__setitem__("policy", calls["policy"] + 1))
    ref_backbone = t.source.reference.module.model.model

    def ref_hook(*a):
        calls["reference"] += 1
        calls["ref_grad"].append(torch.is_grad_enabled())

    ref_backbone.register_forward_hook(ref_hook)
    sums = accumulate(t, 0)
    assert calls["policy"] == 2 and calls["reference"] == 2 and not any(calls["ref_grad"])
    assert float(sums["loss"]) / 8 == pytest.approx(math.log(2), abs=1e-6)
    assert float(sums["seq_kl/chosen"]) == 0.0
    res = t.fit()
    assert res.history[-1]["seq_kl/chosen"] > 0  # the policy moved away from the reference


def test_tgdpo_with_reference_as_reward_model_trains_exactly_like_dpo(tiny_model_dir, data, tmp_path):
    """π_rm = π_ref ⇒ r̂ ≡ 0 ⇒ TGDPO = DPO: identical losses and weights step by step."""
    a = train(tiny_config(tiny_model_dir, data, tmp_path / "dpo", "train.steps=3"))
    b = train(tiny_config(tiny_model_dir, data, tmp_path / "tg", "loss.name=tgdpo", "loss.reward_model=reference",
                          "train.steps=3"))  # fmt: skip
    for x, y in zip(a.history, b.history, strict=True):
        assert y["loss"] == pytest.approx(x["loss"], abs=1e-6)
        assert y["rewards/margin"] == pytest.approx(x["rewards/margin"], abs=1e-6)


def test_tgdpo_without_reward_model_names_the_key(tiny_model_dir, data, tmp_path):
    with pytest.raises(LossConfigError, match=r"loss\.reward_model is required"):
        trainer(tiny_model_dir, data, tmp_path / "tg", "loss.name=tgdpo")
    with pytest.raises(LossConfigError, match=r"loss\.terms\[1\]\.reward_model is required"):
        trainer(tiny_model_dir, data, tmp_path / "tg2", "loss.name=sum", "loss.terms=[{name: dpo}, {name: tgdpo}]")


def test_sppo_fields_come_from_the_data_and_are_validated(tiny_model_dir, data, tmp_path):
    t = trainer(tiny_model_dir, data, tmp_path / "sppo", "loss.name=sppo", "loss.beta=0.1")
    batch_fields = set(t.source.pairs[0].extra)
    assert batch_fields == {"p_win", "p_lose"}
    sums = accumulate(t, 0)
    assert 0.55 <= float(sums["sppo/p_win"]) / 8 <= 0.9
    rows = standard_rows(8)
    for r in rows:
        r.update(p_win=0.6, p_lose=0.4)
    del rows[5]["p_lose"]
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=r"bad.jsonl, record 6, field 'p_lose': missing"):
        trainer(tiny_model_dir, bad, tmp_path / "bad", "loss.name=sppo")
    t2 = trainer(tiny_model_dir, data, tmp_path / "s2", "loss.name=sppo", "loss.win_rates=from_scores")
    assert set(t2.source.pairs[0].extra) == {"score_chosen", "score_rejected"}


def test_weighted_sum_trains_and_reports_each_term(tiny_model_dir, data, tmp_path):
    """loss = 1·DPO + 0.5·SFT: the logged loss is the weighted sum of the logged terms."""
    res = train(tiny_config(tiny_model_dir, data, tmp_path / "sum", "loss.name=sum", "train.steps=2",
                            "loss.terms=[{name: dpo, beta: 0.1}, {name: sft, weight: 0.5}]"))  # fmt: skip
    for m in res.history:
        assert m["loss"] == pytest.approx(m["loss/dpo"] + 0.5 * m["loss/sft"], abs=1e-6)
    assert res.history[0]["loss/dpo"] == pytest.approx(math.log(2), abs=1e-6)
