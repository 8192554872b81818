"""LM scores for equilibrium ranking: the cached-prefix computation equals plain forward passes."""

import numpy as np
import pytest
import torch
from conftest import make_model

import duelist.sample.equilibrium_ranking as er
from duelist.models.logprobs import sequence_logprobs
from duelist.sample.equilibrium_ranking import (
    CORRECT,
    DISC_SUFFIX,
    DISC_WORDS,
    GEN_SUFFIX,
    INCORRECT,
    _chat_pieces,
    lm_scores,
)


@pytest.mark.parametrize("words", [None, {0: "I", 1: "a"}])
def test_cached_prefix_scores_equal_full_forward(tiny_tokenizer, monkeypatch, words):
    """log P(y | prefix + "write a correct/incorrect answer") and log P("Yes"/"No" | prefix, y) computed in one
    right-padded batch on top of the prefix's repeated key/value cache equal the summed token log-probs of
    an uncached forward pass over prefix + continuation (same token ids), row by row."""
    model = make_model(len(tiny_tokenizer), seed=5).eval()
    tok = tiny_tokenizer
    if words is None:  # "Yes"/"No" are several tokens here: one row per (candidate, word)
        words = DISC_WORDS
    else:  # single-token words: one row per candidate reads both next-token log-probs
        assert all(len(tok(w, add_special_tokens=False)["input_ids"]) == 1 for w in words.values())
        monkeypatch.setattr(er, "DISC_WORDS", words)
    prefix = "Passage 1 (film): the movie was great\n\nQuestion: was it good?"
    cands = ["the movie was great", "a terrible film"]
    got = lm_scores(model, tok, prefix, cands)
    head, tail = _chat_pieces(tok, prefix)

    def ids(t):
        return tok(t, add_special_tokens=False)["input_ids"]

    def lp(context, cont):
        with torch.no_grad():
            return float(sequence_logprobs(model, [context], [cont], 0)[0])

    for k, y in enumerate(cands):
        y_ids = [*ids(y), tok.eos_token_id]
        for v in (CORRECT, INCORRECT):
            want = lp(ids(head) + ids(GEN_SUFFIX[v] + tail), y_ids)
            assert got["log_g"][v][k] == pytest.approx(want, abs=1e-4)
            ctx = ids(head) + ids(DISC_SUFFIX.format(answer=y) + tail)
            assert got["log_d"][k][v] == pytest.approx(lp(ctx, ids(words[v])), abs=1e-4)
        assert got["tokens"][k] == len(y_ids)
    assert np.all(np.array(got["log_g"]) < 0)
