"""Reference log-probs: cached on disk by model+data+tokenization; LoRA reference = adapters off."""

from __future__ import annotations

import pytest
import torch
from conftest import standard_rows, write_jsonl
from helpers import tiny_config

import duelist.models.reference as reference
from duelist.train.run import Run, train


@pytest.fixture
def data(tmp_path):
    return write_jsonl(tmp_path / "pairs.jsonl", standard_rows(16))


def test_precomputed_once_then_read_from_cache(tiny_model_dir, data, tmp_path, monkeypatch):
    monkeypatch.setenv("DUELIST_CACHE", str(tmp_path / "cache"))
    first = train(tiny_config(tiny_model_dir, data, tmp_path / "r1"))
    files = list((tmp_path / "cache/reference").glob("*.safetensors"))
    assert len(files) == 1

    def boom(*a, **k):
        raise AssertionError("reference recomputed despite a cache hit")

    monkeypatch.setattr(reference, "batch_logprobs", boom)
    second = train(tiny_config(tiny_model_dir, data, tmp_path / "r2"))
    assert [h["loss"] for h in first.history] == [h["loss"] for h in second.history]
    monkeypatch.undo()
    monkeypatch.setenv("DUELIST_CACHE", str(tmp_path / "cache"))
    # a tokenization change (max_length cuts responses) → a new key
    train(tiny_config(tiny_model_dir, data, tmp_path / "r3", "data.max_length=12", "data.max_prompt_length=6"))
    assert len(list((tmp_path / "cache/reference").glob("*.safetensors"))) == 2


def test_live_reference_equals_precomputed(tiny_model_dir, data, tmp_path, monkeypatch):
    monkeypatch.setenv("DUELIST_CACHE", str(tmp_path / "cache"))
    a = train(tiny_config(tiny_model_dir, data, tmp_path / "pre", "train.reference=precompute"))
    b = train(tiny_config(tiny_model_dir, data, tmp_path / "live", "train.reference=live"))
    for x, y in zip(a.history, b.history, strict=True):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-6)


def test_lora_reference_is_the_same_weights_with_adapters_off(tiny_model_dir, data, tmp_path):
    from transformers import AutoModelForCausalLM

    t = Run(
        tiny_config(
            tiny_model_dir,
            data,
            tmp_path / "lora",
            "model.lora.r=4",
            "train.reference=live",
            "optim.lr=1e-2",
            "train.steps=3",
            "train.save_final=false",
        )
    )
    assert isinstance(t.source.reference, reference.LiveReference)
    assert t.source.reference.module.model is t.learner.model  # no second copy
    t.fit()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    from duelist.data.collate import collate_pairs
    from duelist.models.logprobs import response_logprobs

    b = collate_pairs(t.source.pairs[:2], [0, 1], t.learner.pad_id)
    with torch.no_grad():
        ref = t.source.reference.logps(b)
        want = response_logprobs(base, b)
        pol = response_logprobs(t.learner.model, b)
    assert torch.allclose(ref.sums, want.sums, atol=1e-5)  # adapters off = the base model
    assert not torch.allclose(pol.sums, want.sums, atol=1e-4)  # adapters on = the trained policy
    t.learner.save_final({})  # merges the adapters into the weights (in place, once training is over)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "lora/final")
    with torch.no_grad():
        m = response_logprobs(merged, b)
    assert torch.allclose(m.sums, pol.sums, atol=1e-4)  # the saved model is the merged policy
    assert (tmp_path / "lora/final/adapter/adapter_config.json").is_file()
