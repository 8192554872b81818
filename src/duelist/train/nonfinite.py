"""Non-finite values in a step: which quantity went bad, and for which records.

A NaN or inf in one pair's loss spreads to every weight at the next update, so the loop checks each step
before the optimizer uses it: the per-example losses (and any other per-example quantity it passes, e.g.
the policy's log-probs) and the gradient norm. ``find_nonfinite`` names what went non-finite and which
records of the batch carry it, so that the user can look at exactly those records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch


class NonFiniteError(FloatingPointError):
    """A loss or gradient became NaN or infinite; the run stopped before the update."""


@dataclass(frozen=True)
class NonFinite:
    """What went bad in a step: per quantity, the positions in the batch (``bad``), and the gradient norm."""

    step: int  # 1-based, as the run's log counts
    bad: dict[str, list[int]]  # quantity → record indices (as given) whose value is NaN or inf
    grad_norm: float | None  # the norm when it is not finite, else None
    records: list[int]  # every record index of the batch, in batch order

    def quantities(self) -> list[str]:
        return [*self.bad, *(["gradient norm"] if self.grad_norm is not None else [])]

    def message(self, where: Sequence[str] | None = None) -> str:
        """One line: the step, each bad quantity with its value kind and records. ``where[i]`` names
        record index ``i`` (e.g. ``pairs.jsonl, record 12``) when given."""

        def name(i: int) -> str:
            return f"{i} ({where[i]})" if where is not None else str(i)

        parts = [f"{q} is NaN/inf for record(s) {', '.join(name(i) for i in idx)}" for q, idx in self.bad.items()]
        if self.grad_norm is not None:
            whole = ", ".join(name(i) for i in self.records)
            parts.append(f"gradient norm is {self.grad_norm} over the batch's records {whole}")
        return f"step {self.step}: " + "; ".join(parts)


def find_nonfinite(
    step: int,
    per_example: Mapping[str, torch.Tensor],
    records: Sequence[int],
    grad_norm: float | torch.Tensor | None = None,
) -> NonFinite | None:
    """None if every value is finite; else what is not. ``per_example``: quantity name → tensor with one
    value per record of the batch (``losses``, ``logps/chosen``, …) in the order of ``records`` (the
    batch's record indices); ``grad_norm``: the step's total gradient norm before clipping."""
    bad: dict[str, list[int]] = {}
    for q, values in per_example.items():
        v = values.detach().reshape(-1)
        if v.numel() != len(records):
            raise ValueError(f"{q}: {v.numel()} values for a batch of {len(records)} records")
        rows = (~torch.isfinite(v)).nonzero().flatten().tolist()
        if rows:
            bad[q] = [int(records[r]) for r in rows]
    norm = float(grad_norm) if grad_norm is not None else 0.0
    norm_bad = None if math.isfinite(norm) else norm
    if not bad and norm_bad is None:
        return None
    return NonFinite(step, bad, norm_bad, [int(r) for r in records])
