"""Samplers for online rounds: K responses per prompt from a policy (or a geometric mixture of models).

``GenerateSampler`` draws i.i.d. samples with ``duelist.sample.engine.generate``. A sampler may instead
enumerate every response with its exact probability (``Draw.mass``), as the one-token game twins do
(``duelist.games.twin``); the pairing step then forms exact population estimates instead of sample means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from torch import nn

from duelist.sample.engine import Sample, generate


@dataclass
class Draw:
    """One prompt's samples; ``mass``: their exact probabilities when enumerated, None for i.i.d. draws."""

    samples: list[Sample]
    mass: np.ndarray | None = None


class Sampler(Protocol):
    def draw(
        self,
        models: Sequence[nn.Module],
        weights: Sequence[float],
        prompts: Sequence[list[int]],
        k: int,
        seed: int,
        record: Sequence[float] | None = None,
    ) -> list[Draw]:
        """``k`` responses per prompt from the geometric mixture of ``models`` with ``weights``; with
        ``record``, each sample's log-probability under that mixture too (``Sample.recorded``)."""
        ...


@dataclass
class GenerateSampler:
    max_new_tokens: int
    temperature: float
    eos_id: int | None
    pad_id: int
    prompts_per_chunk: int = 16

    def draw(
        self,
        models: Sequence[nn.Module],
        weights: Sequence[float],
        prompts: Sequence[list[int]],
        k: int,
        seed: int,
        record: Sequence[float] | None = None,
    ) -> list[Draw]:
        groups = generate(
            list(models), prompts, k, max_new_tokens=self.max_new_tokens, eos_id=self.eos_id, pad_id=self.pad_id,
            temperature=self.temperature, weights=weights, seed=seed, prompts_per_chunk=self.prompts_per_chunk,
            record=record,
        )
        return [Draw(g) for g in groups]
