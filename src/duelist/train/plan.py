"""Which pairs each process sees at each step: a pure function of (seed, step, rank).

The data order is a seeded permutation per epoch, concatenated into one stream; global step ``s``
takes the next ``batch_size`` positions. That batch is cut into ``world_size × grad_accum`` equal
micro-batches; process ``r`` takes micro-batches ``r·A … r·A + A − 1``. Because every micro-batch has
the same size, the mean of micro-batch means equals the mean over the global batch, so the gradient
does not depend on how the batch is split across processes or accumulation steps, and a resumed run
sees exactly the pairs an uninterrupted run would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass(frozen=True)
class BatchPlan:
    num_examples: int
    batch_size: int
    seed: int
    world_size: int = 1
    rank: int = 0
    grad_accum: int = 1
    shuffle: bool = True

    def __post_init__(self) -> None:
        parts = self.world_size * self.grad_accum
        if self.batch_size % parts:
            raise ValueError(
                f"train.batch_size={self.batch_size} must be divisible by processes × train.grad_accum = {parts}"
            )
        if self.num_examples < 1:
            raise ValueError("no training examples")

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // (self.world_size * self.grad_accum)

    def total_steps(self, steps: int | None, epochs: float) -> int:
        return steps or max(1, math.ceil(epochs * self.num_examples / self.batch_size))

    @lru_cache(maxsize=4)  # noqa: B019 - a handful of epochs, plan objects are few and frozen
    def _epoch(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_examples))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_examples, generator=g).tolist()

    def global_batch(self, step: int) -> list[int]:
        out, pos = [], step * self.batch_size
        while len(out) < self.batch_size:
            epoch, offset = divmod(pos, self.num_examples)
            take = min(self.batch_size - len(out), self.num_examples - offset)
            out += self._epoch(epoch)[offset : offset + take]
            pos += take
        return out

    def micro_batches(self, step: int) -> list[list[int]]:
        """This process's micro-batches for ``step`` (``grad_accum`` lists of dataset indices)."""
        g, m = self.global_batch(step), self.micro_batch_size
        first = self.rank * self.grad_accum
        return [g[(first + k) * m : (first + k + 1) * m] for k in range(self.grad_accum)]
