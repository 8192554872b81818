"""Stage 4: tokenized pairs → one token batch holding chosen and rejected together.

Chosen sequences fill rows ``0..B-1`` and rejected rows ``B..2B-1`` so one forward pass serves both.
Rows are right-padded to the longest sequence of the batch; ``response_mask`` marks the response
tokens, which are the only targets whose log-probs are computed. Numeric per-pair fields of the pairs
(``TokenizedPair.extra``) become float64 tensors [B] in ``PairBatch.extra``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from duelist.data.tokenize import TokenizedPair


@dataclass
class PairBatch:
    input_ids: Tensor  # [2B, T] long
    attention_mask: Tensor  # [2B, T] long
    response_mask: Tensor  # [2B, T] bool
    indices: Tensor  # [B] long: dataset positions of the pairs
    extra: dict[str, Tensor] = field(default_factory=dict)  # numeric per-pair fields, each [B] float64

    @property
    def num_pairs(self) -> int:
        return self.indices.shape[0]

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device: torch.device | str) -> PairBatch:
        return PairBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.response_mask.to(device),
            self.indices.to(device),
            {k: v.to(device) for k, v in self.extra.items()},
        )


def pad_sequences(
    prompts: Sequence[list[int]], responses: Sequence[list[int]], pad_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Right-pad ``prompt + response`` rows; returns (input_ids, attention_mask, response_mask)."""
    width = max(len(p) + len(r) for p, r in zip(prompts, responses, strict=True))
    n = len(prompts)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    response = torch.zeros((n, width), dtype=torch.bool)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        input_ids[i, : len(p) + len(r)] = torch.tensor(p + r, dtype=torch.long)
        attention[i, : len(p) + len(r)] = 1
        response[i, len(p) : len(p) + len(r)] = True
    return input_ids, attention, response


def collate_pairs(pairs: Sequence[TokenizedPair], indices: Sequence[int], pad_id: int) -> PairBatch:
    prompts = [p.prompt for p in pairs] * 2
    responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    input_ids, attention, response = pad_sequences(prompts, responses, pad_id)
    keys = set(pairs[0].extra) if pairs else set()
    if any(set(p.extra) != keys for p in pairs):
        raise ValueError("pairs of one batch carry different extra fields")
    extra = {k: torch.tensor([p.extra[k] for p in pairs], dtype=torch.float64) for k in sorted(keys)}
    return PairBatch(input_ids, attention, response, torch.tensor(list(indices), dtype=torch.long), extra)
