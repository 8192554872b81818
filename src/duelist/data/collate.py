"""Stage 4: token ids → one token batch per forward pass, in one of four layouts.

A batch scores N responses (for preference pairs: chosen ``0..B-1``, rejected ``B..2B-1``). Whatever the
layout, it says for each response token m which hidden state predicts it (``source``), which token it is
(``target``), which response it belongs to (``seq``) and where in that response it sits (``pos``); the
log-prob engine needs nothing else, so every layout gives the same log-probs.

A response's final token is predicted but predicts nothing, and nothing attends to it (it is the last of its
sequence, and in the shared layouts the rejected tokens do not see the chosen ones): the rows leave it
out, and ``target`` carries the token ids themselves. One column fewer per response for every layer.

Layouts (``train.layout``):
* ``padded``: one row per response (``prompt + response``, here as everywhere without its final token),
  right-padded to the longest; a 2-D padding mask. What most trainers do.
* ``packed``: all ``prompt + response`` sequences in one row, position ids restarting at 0 for each, no
  mask: transformers turns that into a block-causal mask (a variable-length kernel with flash attention).
  No padding.
* ``shared``: one row per pair, ``prompt + chosen + rejected``, with a 4-D mask in which the chosen tokens
  see the prompt and the chosen tokens before them, the rejected tokens see the prompt and the rejected
  tokens before them, and the rejected positions restart where the prompt ends. The prompt is computed
  once for both responses. Rows are padded to the longest pair.
* ``shared_packed``: the ``shared`` blocks of all pairs in one row: prompt once, no padding.
4-D masks need an attention implementation that accepts them (``sdpa``, ``eager``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Literal

import torch
from torch import Tensor

from duelist.data.tokenize import TokenizedPair, TokenizedSample

Layout = Literal["padded", "packed", "shared", "shared_packed"]
LAYOUTS: tuple[str, ...] = ("padded", "packed", "shared", "shared_packed")
ROW_FORMAT = 2  # bumped whenever the rows a layout builds change: reference caches are keyed by it


@dataclass
class TokenBatch:
    input_ids: Tensor  # [R, L] long
    attention_mask: Tensor | None  # [R, L] 0/1 padding mask, [R, 1, L, L] bool (True = may attend), or None
    position_ids: Tensor | None  # [R, L] long, or None for 0..L-1
    source: Tensor  # [M] flat index (row · L + column) of the hidden state that predicts token m
    target: Tensor  # [M] token m's id
    seq: Tensor  # [M] the response token m belongs to, 0..N-1
    pos: Tensor  # [M] its index inside that response
    lengths: Tensor  # [N] response lengths
    num_tokens: int = 0  # prompt + response tokens over the N sequences (what throughput is counted in)

    @property
    def num_sequences(self) -> int:
        return self.lengths.shape[0]

    def response_mask(self) -> Tensor:
        """[N, max response length] bool, True at real response tokens (response-aligned arrays)."""
        width = int(self.lengths.max()) if self.lengths.numel() else 0
        return torch.arange(width, device=self.lengths.device)[None, :] < self.lengths[:, None]

    @classmethod
    def from_padded(cls, input_ids: Tensor, attention_mask: Tensor, response_mask: Tensor) -> TokenBatch:
        """From right-padded rows with a boolean mask of the response tokens (one response per row)."""
        rows, cols = response_mask.nonzero(as_tuple=True)
        if bool((cols == 0).any()):
            raise ValueError("a response token at position 0 has no context; every row needs a prompt token")
        width = input_ids.shape[1]
        lengths = response_mask.sum(1)
        starts = torch.cumsum(lengths, 0) - lengths
        pos = torch.arange(rows.shape[0], device=rows.device) - starts[rows]
        return cls(input_ids, attention_mask, None, rows * width + cols - 1, input_ids[rows, cols], rows, pos,
                   lengths, int(attention_mask.sum()))

    def tensors(self) -> dict[str, Tensor | None]:
        """The tensors the log-prob engine reads (keyword arguments of ``LogProbModel.forward``)."""
        return {f.name: getattr(self, f.name) for f in fields(TokenBatch) if f.name != "num_tokens"}

    def to(self, device: torch.device | str) -> TokenBatch:
        moved = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in self.tensors().items()}
        return replace(self, **moved)


@dataclass
class ExampleBatch(TokenBatch):
    """A token batch of training examples: their dataset positions and numeric per-example fields."""

    indices: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))  # [B] dataset positions
    extra: dict[str, Tensor] = field(default_factory=dict)  # numeric per-example fields, each [B] float64

    def to(self, device: torch.device | str) -> ExampleBatch:
        out = TokenBatch.to(self, device)
        return replace(out, indices=self.indices.to(device), extra={k: v.to(device) for k, v in self.extra.items()})

    def sequence_keys(self) -> list[tuple[int, int]]:
        """(example index, side) of every sequence, in the batch's sequence order."""
        raise NotImplementedError


@dataclass
class PairBatch(ExampleBatch):
    """Pairs: sequences 0..B−1 are the chosen responses, B..2B−1 the rejected ones."""

    @property
    def num_pairs(self) -> int:
        return self.indices.shape[0]

    def sequence_keys(self) -> list[tuple[int, int]]:
        idx = self.indices.tolist()
        return [(i, 0) for i in idx] + [(i, 1) for i in idx]


@dataclass
class SampleBatch(ExampleBatch):
    """Single responses (pointwise losses): sequence i is example ``indices[i]``."""

    def sequence_keys(self) -> list[tuple[int, int]]:
        return [(i, 0) for i in self.indices.tolist()]


class _Builder:
    """Accumulates rows of tokens and the (source, target, seq, pos) of every response token."""

    def __init__(self) -> None:
        self.rows: list[list[int]] = []
        self.positions: list[list[int]] = []
        self.source: list[tuple[int, int]] = []
        self.target: list[int] = []
        self.seq: list[int] = []
        self.pos: list[int] = []

    def new_row(self) -> int:
        self.rows.append([])
        self.positions.append([])
        return len(self.rows) - 1

    def add(self, row: int, tokens: Sequence[int], start_pos: int) -> int:
        """Append ``tokens`` to ``row`` with positions from ``start_pos``; returns their first column."""
        col = len(self.rows[row])
        self.rows[row].extend(tokens)
        self.positions[row].extend(range(start_pos, start_pos + len(tokens)))
        return col

    def response(self, row: int, prompt_last: int, tokens: Sequence[int], seq: int) -> int:
        """Append response ``tokens`` but the last to ``row``; the first is predicted from the prompt's last
        column, each other from the column before it. Returns the number of columns added."""
        first = self.add(row, tokens[:-1], self.positions[row][prompt_last] + 1)
        for k, token in enumerate(tokens):
            self.source.append((row, prompt_last if k == 0 else first + k - 1))
            self.target.append(token)
            self.seq.append(seq)
            self.pos.append(k)
        return max(len(tokens) - 1, 0)

    def tensors(self, pad_id: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        width = max(len(r) for r in self.rows)
        ids = torch.full((len(self.rows), width), pad_id, dtype=torch.long)
        pos_ids = torch.zeros_like(ids)
        real = torch.zeros_like(ids, dtype=torch.bool)
        for i, (r, p) in enumerate(zip(self.rows, self.positions, strict=True)):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            pos_ids[i, : len(p)] = torch.tensor(p, dtype=torch.long)
            real[i, : len(r)] = True

        def flat(rc: list[tuple[int, int]]) -> Tensor:
            t = torch.tensor(rc, dtype=torch.long).reshape(-1, 2)
            return t[:, 0] * width + t[:, 1]

        return (ids, pos_ids, real, flat(self.source), torch.tensor(self.target, dtype=torch.long),
                torch.tensor(self.seq, dtype=torch.long), torch.tensor(self.pos, dtype=torch.long))


def pad_sequences(
    prompts: Sequence[list[int]], responses: Sequence[list[int]], pad_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Plain right-padded ``prompt + response`` rows, final tokens included: (input_ids, attention_mask,
    response_mask), for callers that run the model themselves (e.g. to read the last hidden state)."""
    b = _Builder()
    for p, r in zip(prompts, responses, strict=True):
        b.add(b.new_row(), [*p, *r], 0)
    ids, _, real, *_ = b.tensors(pad_id)
    response = real & (torch.arange(ids.shape[1]) >= torch.tensor([len(p) for p in prompts])[:, None])
    return ids, real.long(), response


def collate_sequences(
    prompts: Sequence[list[int]], responses: Sequence[list[int]], pad_id: int, layout: str = "padded"
) -> TokenBatch:
    """A batch scoring ``responses[i]`` after ``prompts[i]``, in the ``padded`` or ``packed`` layout."""
    if layout not in ("padded", "packed"):
        raise ValueError(f"layout {layout!r} needs pairs; for single sequences use 'padded' or 'packed'")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every sequence needs at least one prompt token to predict its first response token")
    b = _Builder()
    row = b.new_row() if layout == "packed" else -1
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        if layout == "padded":
            row = b.new_row()
        start = b.add(row, p, 0)
        b.response(row, start + len(p) - 1, r, i)
    ids, pos_ids, real, source, target, seq, pos = b.tensors(pad_id)
    lengths = torch.tensor([len(r) for r in responses], dtype=torch.long)
    num_tokens = sum(len(p) + len(r) for p, r in zip(prompts, responses, strict=True))
    if layout == "padded":
        return TokenBatch(ids, real.long(), None, source, target, seq, pos, lengths, num_tokens)
    return TokenBatch(ids, None, pos_ids, source, target, seq, pos, lengths, num_tokens)


def _shared_mask(group: Tensor, segment: Tensor, position: Tensor) -> Tensor:
    """[R, 1, L, L] bool: query q may attend key k iff same group, k not later than q, and k is prompt or in
    q's own response. Padding (group −1) attends only itself so no attention row is empty."""
    same = (group[:, :, None] == group[:, None, :]) & (group[:, :, None] >= 0)
    causal = position[:, None, :] <= position[:, :, None]
    visible = (segment[:, None, :] == 0) | (segment[:, None, :] == segment[:, :, None])
    allowed = same & causal & visible
    allowed |= torch.eye(group.shape[1], dtype=torch.bool)[None] & (group[:, :, None] < 0)
    return allowed[:, None]


Group = tuple[list[int], list[tuple[list[int], int]]]  # (prompt, [(response, sequence number)])


def _collate_shared(groups: Sequence[Group], num_sequences: int, pad_id: int, packed: bool) -> TokenBatch:
    """Each group's prompt once, followed by its responses, each seeing the prompt and itself only; every
    response's positions restart where the prompt ends. One row per group, or all groups in one row."""
    b = _Builder()
    group_ids: list[list[int]] = []
    segments: list[list[int]] = []
    lengths = [0] * num_sequences
    row = -1
    for g, (prompt, responses) in enumerate(groups):
        if not prompt:
            raise ValueError("every sequence needs at least one prompt token to predict its first response token")
        if row < 0 or not packed:
            row = b.new_row()
            group_ids.append([])
            segments.append([])
        last = b.add(row, prompt, 0) + len(prompt) - 1
        segments[-1] += [0] * len(prompt)
        for r, (tokens, seq) in enumerate(responses, 1):
            added = b.response(row, last, tokens, seq)
            segments[-1] += [r] * added
            lengths[seq] = len(tokens)
        group_ids[-1] += [g] * (len(segments[-1]) - len(group_ids[-1]))
    ids, pos_ids, _, source, target, seq, pos = b.tensors(pad_id)
    group_t = torch.full(ids.shape, -1, dtype=torch.long)
    seg_t = torch.zeros(ids.shape, dtype=torch.long)
    for i, (gi, si) in enumerate(zip(group_ids, segments, strict=True)):
        group_t[i, : len(gi)] = torch.tensor(gi)
        seg_t[i, : len(si)] = torch.tensor(si)
    num_tokens = sum(len(p) + len(t) for p, rs in groups for t, _ in rs)
    mask = _shared_mask(group_t, seg_t, pos_ids)
    return TokenBatch(ids, mask, pos_ids, source, target, seq, pos, torch.tensor(lengths, dtype=torch.long),
                      num_tokens)


def collate_pairs(
    pairs: Sequence[TokenizedPair], indices: Sequence[int], pad_id: int, layout: str = "padded"
) -> PairBatch:
    """One batch scoring every pair's chosen (sequences 0..B−1) and rejected (B..2B−1) response."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    if layout in ("shared", "shared_packed"):
        n = len(pairs)
        groups = [(p.prompt, [(p.chosen, i), (p.rejected, n + i)]) for i, p in enumerate(pairs)]
        tb = _collate_shared(groups, 2 * n, pad_id, packed=layout == "shared_packed")
    else:
        tb = collate_sequences([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs],
                               pad_id, layout)
    return PairBatch(**_token_fields(tb), indices=torch.tensor(list(indices), dtype=torch.long),
                     extra=_extra(pairs))


def collate_samples(
    samples: Sequence[TokenizedSample], indices: Sequence[int], pad_id: int, layout: str = "padded"
) -> SampleBatch:
    """One batch scoring every sample's response. In the shared layouts, consecutive samples with the same
    prompt share one copy of it (K samples of a prompt: the prompt is computed once)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    if layout in ("shared", "shared_packed"):
        groups: list[Group] = []
        for i, s in enumerate(samples):
            if groups and groups[-1][0] == s.prompt:
                groups[-1][1].append((s.response, i))
            else:
                groups.append((s.prompt, [(s.response, i)]))
        tb = _collate_shared(groups, len(samples), pad_id, packed=layout == "shared_packed")
    else:
        tb = collate_sequences([s.prompt for s in samples], [s.response for s in samples], pad_id, layout)
    return SampleBatch(**_token_fields(tb), indices=torch.tensor(list(indices), dtype=torch.long),
                       extra=_extra(samples))


def _token_fields(tb: TokenBatch) -> dict:
    return {f.name: getattr(tb, f.name) for f in fields(TokenBatch)}


def _extra(examples: Sequence[TokenizedPair | TokenizedSample]) -> dict[str, Tensor]:
    keys = set(examples[0].extra) if examples else set()
    if any(set(e.extra) != keys for e in examples):
        raise ValueError("examples of one batch carry different extra fields")
    return {k: torch.tensor([e.extra[k] for e in examples], dtype=torch.float64) for k in sorted(keys)}
