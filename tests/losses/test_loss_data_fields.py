"""Numeric per-pair fields (e.g. SPPO's win-rates) travel from records to batches, validated on the way."""

from __future__ import annotations

import pytest
import torch

from duelist.data.collate import collate_pairs
from duelist.data.formats import validate
from duelist.data.sources import DataError, Record
from duelist.data.tokenize import PairTokenizer

FIELDS = {"p_win": (0.0, 1.0), "p_lose": (0.0, 1.0)}


def rec(n: int, **extra) -> Record:
    return Record("f.jsonl", n, {"prompt": "the movie was", "chosen": " great", "rejected": " bad", **extra})


@pytest.mark.parametrize(
    ("extra", "field", "reason"),
    [
        ({"p_lose": 0.2}, "p_win", "missing"),
        ({"p_win": None, "p_lose": 0.2}, "p_win", "missing"),
        ({"p_win": "high", "p_lose": 0.2}, "p_win", "expected a number, got 'high'"),
        ({"p_win": True, "p_lose": 0.2}, "p_win", "expected a number, got True"),
        ({"p_win": [0.5], "p_lose": 0.2}, "p_win", "expected a number"),
        ({"p_win": float("nan"), "p_lose": 0.2}, "p_win", "expected a finite number"),
        ({"p_win": 0.7, "p_lose": 1.5}, "p_lose", "1.5 is outside [0.0, 1.0]"),
    ],
)
def test_bad_fields_name_file_record_and_field(extra, field, reason):
    with pytest.raises(DataError) as e:
        validate([rec(1, p_win=0.6, p_lose=0.4), rec(7, **extra)], fields=FIELDS)
    msg = str(e.value)
    assert "f.jsonl, record 7" in msg and f"field {field!r}" in msg and reason in msg


def test_fields_are_optional_unless_requested_and_skip_works():
    assert validate([rec(1)]).examples[0].extra == {}
    out = validate([rec(1, p_win=0.6, p_lose=0.4), rec(2), rec(3, p_win="0.9", p_lose=0)], "skip", FIELDS)
    assert [e.number for e in out.examples] == [1, 3]
    assert out.examples[1].extra == {"p_win": 0.9, "p_lose": 0.0}  # numeric strings (CSV) are read as numbers


def test_fields_reach_the_batch_as_float64(tiny_tokenizer):
    ex = validate([rec(1, p_win=0.6, p_lose=0.4), rec(2, p_win=0.75, p_lose=0.1)], fields=FIELDS).examples
    enc = PairTokenizer(tiny_tokenizer, max_length=6, max_prompt_length=4)
    pairs = [enc(e) for e in ex]
    assert pairs[0].extra == {"p_win": 0.6, "p_lose": 0.4}
    b = collate_pairs(pairs, [0, 1], tiny_tokenizer.pad_token_id).to("cpu")
    assert b.extra["p_win"].dtype == torch.float64 and b.extra["p_win"].tolist() == [0.6, 0.75]
    assert b.extra["p_lose"].tolist() == [0.4, 0.1]
