"""Transforms of validated preference examples, applied in one place (``apply``) between validation and
tokenization, so any offline loss or reward model sees them the same way.

* **Reward augmentation** (Zhang et al. 2024, "Reward-Augmented Data Enhances Direct Preference Alignment of
  LLMs", 2410.08067; ``data.reward_augment``): a pair (x, y_w, y_l) rated (r_w, r_l) becomes two goal-conditioned
  pairs, (g(r_w) ⊕ x, y_w ≻ y_l) and (g(r_l) ⊕ x, y_l ≻ y_w): "write a response worth r" is best answered by the
  response that got r. The data set doubles: rows 0…N−1 are the first kind, row N + i is row i's mirror. The goal
  g(r) is a system message (conversations; prepended to an existing system message) or a paragraph before a text
  prompt (``placement: user``: before the first user turn, the code's "nosys" variant). Pairs whose ratings
  contradict their label (r_w < r_l) are dropped first (``drop_inconsistent``; the paper drops pairs whose
  averaged fine-grained scores do), and the rating fields are consumed. At inference the paper's code conditions
  on the top score (UNCONFIRMED in ALGORITHMS.md §7.2); ``goal_prompt`` builds that prompt.
* **Label noise** (``data.flip_rate``, ``data.flip_seed``): chosen and rejected are swapped for a seeded random
  subset of exactly round(rate · N) pairs; every pair records ``flipped`` (1.0 or 0.0) among its per-pair fields,
  so noise-robust methods (CRM, rDPO, cDPO) can be measured against the truth. Other per-pair numbers are left as
  they were: the noise is a rater choosing the wrong side, not different data.

Augmentation runs before the flips (it needs the true ratings), so the flip rate is a rate over the final pairs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from duelist.data.formats import Bounds, Messages, PreferenceExample

FLIPPED_FIELD = "flipped"
GOAL_TEMPLATE = (
    "Respond so that your answer implicitly earns the target score below (on a scale from {low} to {high}, "
    "higher is better).\nTarget score: {score}."
)


def _number(x: float) -> str:
    return f"{x:.4g}"


def goal_text(score: float, low: float, high: float) -> str:
    return GOAL_TEMPLATE.format(score=_number(score), low=_number(low), high=_number(high))


def goal_prompt(prompt: str | Messages, goal: str, placement: str = "system") -> str | Messages:
    """``prompt`` conditioned on the ``goal`` text: a system message (merged into an existing one) or, with
    ``placement="user"``, a paragraph before the first user turn; a text prompt gets it as its first paragraph."""
    if isinstance(prompt, str):
        return f"{goal}\n\n{prompt}"
    msgs = [dict(m) for m in prompt]
    if placement == "system":
        if msgs and msgs[0]["role"] == "system":
            msgs[0]["content"] = f"{goal}\n\n{msgs[0]['content']}"
            return msgs
        return [{"role": "system", "content": goal}, *msgs]
    first_user = next((i for i, m in enumerate(msgs) if m["role"] == "user"), None)
    if first_user is None:
        return [{"role": "user", "content": goal}, *msgs]
    msgs[first_user]["content"] = f"{goal}\n\n{msgs[first_user]['content']}"
    return msgs


def reward_augment(
    examples: Sequence[PreferenceExample],
    chosen_field: str = "score_chosen",
    rejected_field: str = "score_rejected",
    low: float | None = None,
    high: float | None = None,
    placement: str = "system",
    drop_inconsistent: bool = True,
) -> tuple[list[PreferenceExample], int]:
    """Goal-conditioned pairs from rated pairs (module docstring). ``low``/``high``: the rating scale named in the
    goal (default: the smallest and largest rating in the data). Returns (2·N' examples, pairs dropped as
    inconsistent)."""
    for ex in examples:
        for f in (chosen_field, rejected_field):
            if f not in ex.extra:
                raise KeyError(f"{ex.source}, record {ex.number}: reward augmentation reads the rating field {f!r}")
    kept = [ex for ex in examples if not (drop_inconsistent and ex.extra[chosen_field] < ex.extra[rejected_field])]
    ratings = [ex.extra[f] for ex in kept for f in (chosen_field, rejected_field)]
    lo = min(ratings, default=0.0) if low is None else low
    hi = max(ratings, default=1.0) if high is None else high

    def rest(ex: PreferenceExample) -> dict[str, float]:
        return {k: v for k, v in ex.extra.items() if k not in (chosen_field, rejected_field)}

    first = [
        dataclasses.replace(
            ex, prompt=goal_prompt(ex.prompt, goal_text(ex.extra[chosen_field], lo, hi), placement), extra=rest(ex)
        )
        for ex in kept
    ]
    mirror = [
        dataclasses.replace(
            ex,
            prompt=goal_prompt(ex.prompt, goal_text(ex.extra[rejected_field], lo, hi), placement),
            chosen=ex.rejected,
            rejected=ex.chosen,
            extra=rest(ex),
        )
        for ex in kept
    ]
    return first + mirror, len(examples) - len(kept)


def flip_labels(examples: Sequence[PreferenceExample], rate: float, seed: int = 0) -> list[PreferenceExample]:
    """Swap chosen/rejected for exactly round(rate · N) examples chosen at random (seeded); each example records
    ``flipped`` = 1.0 or 0.0 in its per-pair fields."""
    if not 0 <= rate <= 1:
        raise ValueError(f"flip rate must be in [0, 1], got {rate}")
    n = len(examples)
    chosen = set(np.random.default_rng(seed).choice(n, size=round(rate * n), replace=False).tolist())
    out = []
    for i, ex in enumerate(examples):
        if i in chosen:
            out.append(
                dataclasses.replace(ex, chosen=ex.rejected, rejected=ex.chosen, extra={**ex.extra, FLIPPED_FIELD: 1.0})
            )
        else:
            out.append(dataclasses.replace(ex, extra={**ex.extra, FLIPPED_FIELD: 0.0}))
    return out


def required_fields(data: Any) -> dict[str, Bounds]:
    """Numeric per-pair record fields the configured transforms read (``data``: a ``DataConfig``); validate the
    records with these besides the loss's own fields."""
    aug = data.reward_augment
    return {} if aug is None else {aug.chosen: (None, None), aug.rejected: (None, None)}


def apply(examples: Sequence[PreferenceExample], data: Any) -> tuple[list[PreferenceExample], str]:
    """The transforms ``data`` (a ``DataConfig``) asks for, in order: reward augmentation, then label flips.
    Returns the examples and a one-line summary ("" when there is nothing to do)."""
    out, notes = list(examples), []
    aug = data.reward_augment
    if aug is not None:
        n = len(out)
        out, dropped = reward_augment(
            out, aug.chosen, aug.rejected, aug.low, aug.high, aug.placement, aug.drop_inconsistent
        )
        notes.append(f"reward-augmented {n} → {len(out)} pairs ({dropped} with contradicting ratings dropped)")
    if data.flip_rate > 0:
        out = flip_labels(out, data.flip_rate, data.flip_seed)
        flipped = sum(int(ex.extra[FLIPPED_FIELD]) for ex in out)
        notes.append(f"flipped {flipped} of {len(out)} labels (flip_rate={data.flip_rate}, seed {data.flip_seed})")
    return out, "; ".join(notes)
