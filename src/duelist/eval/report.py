"""What an evaluation keeps and shows besides its numbers: every sample (``samples.jsonl``) and a few
policy/reference pairs printed in the terminal, so that a person can read what the oracle scored."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def sample_rows(
    prompts: Sequence[str],
    policy: Sequence[str],
    reference: Sequence[str],
    samples_per_prompt: int,
    columns: dict[str, Sequence[Any]],
) -> list[dict[str, Any]]:
    """One row per prompt and sample index s: the prompt, the policy's and the reference's s-th samples, and
    each per-sample column (``columns[name][j]`` belongs to sample j, prompt order), e.g. oracle rewards."""
    k = samples_per_prompt
    rows = []
    for j, (pol, ref) in enumerate(zip(policy, reference, strict=True)):
        row: dict[str, Any] = {"prompt_index": j // k, "sample": j % k, "prompt": prompts[j // k]}
        row |= {"policy": pol, "reference": ref}
        row |= {name: _plain(values[j]) for name, values in columns.items()}
        rows.append(row)
    return rows


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def write_samples(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def print_pairs(rows: Sequence[dict[str, Any]], n: int = 3, seed: int = 0) -> None:
    """``n`` rows drawn at random (seeded): prompt, then policy and reference sample with their scores."""
    if n <= 0 or not rows:
        return
    picked = sorted(random.Random(seed).sample(range(len(rows)), min(n, len(rows))))
    t = Table(title=f"{len(picked)} random policy/reference pairs (all in samples.jsonl)", show_lines=True)
    t.add_column("prompt", ratio=1)
    t.add_column("policy", ratio=2)
    t.add_column("reference", ratio=2)
    for i in picked:
        r = rows[i]
        pol, ref = escape(r["policy"]) + _scores(r, "policy"), escape(r["reference"]) + _scores(r, "reference")
        t.add_row(escape(r["prompt"]), pol, ref)
    Console().print(t)


def _scores(row: dict[str, Any], who: str) -> str:
    parts = []
    if f"reward_{who}" in row:
        parts.append(f"reward {row[f'reward_{who}']:.3f}")
    if f"on_task_{who}" in row:
        parts.append("on task" if row[f"on_task_{who}"] else "off task")
    return f"\n[dim]({', '.join(parts)})[/dim]" if parts else ""
