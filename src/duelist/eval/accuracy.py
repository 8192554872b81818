"""Implicit-reward accuracy on held-out human pairs.

A policy trained with a DPO-family loss defines the implicit reward r(x, y) = β(log π(y|x) − log π_ref(y|x))
= β ρ(y). On a held-out pair it "agrees with the human" when β(ρ(y_w) − ρ(y_l)) > 0; a margin of
exactly 0 counts ½, so the reference scored against itself gets exactly 0.5. The accuracy comes with a
95% interval over pairs (``winrate_interval``: Wilson for 0/1 outcomes, t-interval when a tie occurs).

Pairs are tokenized exactly as training tokenizes them (``PairTokenizer`` with the given max_length,
max_prompt_length and truncation), so ``keep_end`` cuts long prompts from the left and long responses
from the right, and ``drop`` skips pairs that do not fit (their number is reported).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from duelist.data.formats import PreferenceExample
from duelist.data.tokenize import PairTokenizer, TokenizedPair
from duelist.eval.stats import Estimate, winrate_interval
from duelist.models.logprobs import sequence_logprobs


@torch.no_grad()
def pair_logprobs(model: torch.nn.Module, pairs: Sequence[TokenizedPair], pad_id: int, batch_size: int = 8):
    """(log π(y_w|x), log π(y_l|x)) summed over response tokens, as float64 arrays [n]."""
    was_training = model.training
    model.eval()
    out = []
    for resp in ([p.chosen for p in pairs], [p.rejected for p in pairs]):
        # batch sequences of similar length together (less padding), then restore the order
        order = np.argsort([len(p.prompt) + len(r) for p, r in zip(pairs, resp, strict=True)], kind="stable")
        vals = np.empty(len(pairs))
        vals[order] = sequence_logprobs(
            model, [pairs[i].prompt for i in order], [resp[i] for i in order], pad_id, batch_size
        ).numpy()
        out.append(vals)
    model.train(was_training)
    return out[0], out[1]


def accuracy_from_margins(margins: np.ndarray) -> Estimate:
    """Fraction of margins > 0, ties (exactly 0) counting ½, with a 95% interval."""
    m = np.asarray(margins, dtype=np.float64)
    return winrate_interval(np.where(m > 0, 1.0, np.where(m < 0, 0.0, 0.5)))


@dataclass
class AccuracyResult:
    accuracy: Estimate
    margins: np.ndarray  # β(ρ_w − ρ_l) per pair
    chosen_logratio: np.ndarray  # ρ(y_w) per pair
    rejected_logratio: np.ndarray
    pairs: int
    dropped: int
    truncated: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy.as_dict(),
            "mean_margin": float(self.margins.mean()),
            "mean_chosen_logratio": float(self.chosen_logratio.mean()),
            "mean_rejected_logratio": float(self.rejected_logratio.mean()),
            "pairs": self.pairs,
            "dropped": self.dropped,
            "truncated": self.truncated,
        }


def tokenize_examples(
    tokenizer: Any,
    examples: Sequence[PreferenceExample],
    max_length: int = 512,
    max_prompt_length: int = 256,
    truncation: str = "keep_end",
) -> tuple[list[TokenizedPair], int, int]:
    enc = PairTokenizer(tokenizer, max_length, max_prompt_length, truncation)
    pairs, kept, truncated = enc.many(examples)
    return pairs, len(examples) - len(kept), truncated


def implicit_reward_accuracy(
    policy: torch.nn.Module,
    reference: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[PreferenceExample],
    beta: float = 0.1,
    max_length: int = 512,
    max_prompt_length: int = 256,
    truncation: str = "keep_end",
    batch_size: int = 8,
    reference_logps: tuple[np.ndarray, np.ndarray] | None = None,
) -> AccuracyResult:
    """Implicit-reward accuracy of ``policy`` against ``reference`` on ``examples``. ``reference_logps``
    (chosen, rejected) may be passed to skip the reference's forward passes (they do not change)."""
    pairs, dropped, truncated = tokenize_examples(tokenizer, examples, max_length, max_prompt_length, truncation)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    pw, pl = pair_logprobs(policy, pairs, pad, batch_size)
    rw, rl = reference_logps if reference_logps is not None else pair_logprobs(reference, pairs, pad, batch_size)
    cw, cl = pw - rw, pl - rl
    margins = beta * (cw - cl)
    return AccuracyResult(accuracy_from_margins(margins), margins, cw, cl, len(pairs), dropped, truncated)


def evaluate_accuracy(
    policy_dir: str | Path,
    data: str = "hh-harmless:test",
    reference: str = "default",
    beta: float = 0.1,
    max_length: int = 512,
    max_prompt_length: int = 256,
    truncation: str = "keep_end",
    batch_size: int = 8,
    limit: int | None = None,
    cache: Path | None = None,
) -> dict[str, Any]:
    """Load models and data by name and report ``implicit_reward_accuracy`` (JSON-able). The reference's
    log-probs are read from / written to ``cache`` (an .npz) when given: use one file per
    (reference, data, tokenization settings); a cache whose length differs from the pairs is an error."""
    from duelist.config import ModelConfig
    from duelist.data.formats import validate
    from duelist.data.sources import read_records
    from duelist.models.load import load_model

    records = read_records(data, "test")[:limit]
    examples = validate(records, on_invalid="skip").examples
    pol, tok = load_model(ModelConfig(name=str(policy_dir), dtype="float32"))
    pairs, dropped, truncated = tokenize_examples(tok, examples, max_length, max_prompt_length, truncation)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if cache is not None and Path(cache).is_file():
        z = np.load(cache)
        rw, rl = z["chosen"], z["rejected"]
        if len(rw) != len(pairs):
            raise ValueError(f"{cache}: {len(rw)} cached reference log-probs for {len(pairs)} pairs")
    else:
        ref, _ = load_model(ModelConfig(name=reference, dtype="float32"))
        rw, rl = pair_logprobs(ref, pairs, pad, batch_size)
        del ref
        if cache is not None:
            np.savez(cache, chosen=rw, rejected=rl)
    pw, pl = pair_logprobs(pol, pairs, pad, batch_size)
    cw, cl = pw - rw, pl - rl
    margins = beta * (cw - cl)
    res = AccuracyResult(accuracy_from_margins(margins), margins, cw, cl, len(pairs), dropped, truncated)
    return {"policy": str(policy_dir), "reference": reference, "data": data, "beta": beta, **res.as_dict()}
