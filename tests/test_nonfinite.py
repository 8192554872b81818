"""Naming what went non-finite in a step, and for which records."""

from __future__ import annotations

import math

import pytest
import torch

from duelist.errors import USER_ERRORS
from duelist.train.nonfinite import NonFiniteError, find_nonfinite

RECORDS = [10, 11, 12, 13]


def test_all_finite_is_none():
    assert find_nonfinite(3, {"loss": torch.zeros(4)}, RECORDS, torch.tensor(2.5)) is None


def test_names_each_bad_quantity_and_its_records():
    loss = torch.tensor([0.1, math.nan, 0.3, math.inf])
    logps = torch.tensor([-1.0, -2.0, -math.inf, -1.0])
    bad = find_nonfinite(7, {"loss": loss, "logps/chosen": logps}, RECORDS, 1.5)
    assert bad.bad == {"loss": [11, 13], "logps/chosen": [12]} and bad.grad_norm is None
    assert bad.quantities() == ["loss", "logps/chosen"]
    assert bad.message() == "step 7: loss is NaN/inf for record(s) 11, 13; logps/chosen is NaN/inf for record(s) 12"


def test_gradient_norm_alone_names_the_whole_batch():
    bad = find_nonfinite(2, {"loss": torch.ones(4)}, RECORDS, torch.tensor(math.inf))
    assert bad.bad == {} and bad.grad_norm == math.inf and bad.quantities() == ["gradient norm"]
    where = {i: f"d.jsonl, record {i + 1}" for i in RECORDS}
    assert bad.message(where) == (
        "step 2: gradient norm is inf over the batch's records 10 (d.jsonl, record 11), 11 (d.jsonl, record 12), "
        "12 (d.jsonl, record 13), 13 (d.jsonl, record 14)"
    )


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="3 values for a batch of 4"):
        find_nonfinite(1, {"loss": torch.ones(3)}, RECORDS)


def test_error_class_is_a_user_error():
    assert issubclass(NonFiniteError, USER_ERRORS)
