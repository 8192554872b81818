"""Reproducible builders for the shipped task files (``duelist tasks build <task>``).

positive-review:
1. prompts: movie-review openings (the first 4–8 words of a VADER movie-review snippet) wrapped as a
   user turn "Continue this movie review: <opening>"; 1,024 training and 256 test prompts from disjoint
   snippets, chosen with a fixed seed.
2. pairs: for every training prompt, ``samples`` completions (32 new tokens, temperature 1) from the
   default model; the most and least positive under the lexicon become chosen and rejected. Prompts
   whose samples all score the same are skipped.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from rich.console import Console

from duelist.data.tasks import HERE
from duelist.data.tasks.judged_builders import build_finegrained_qa, build_intransitive_review
from duelist.data.tasks.plural_builders import build_plural_review

PROMPT_TEMPLATE = "Continue this movie review: {opening}"
console = Console(stderr=True)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)


def build_positive_review_prompts(
    snippets: Path, out: Path = HERE / "positive_review", n_train: int = 1024, n_test: int = 256, seed: int = 0
) -> None:
    rng = random.Random(seed)
    rows = []
    for line in snippets.read_text(encoding="latin-1").splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and len(parts[2].split()) >= 10:
            rows.append((parts[0], float(parts[1]), parts[2]))
    rng.shuffle(rows)
    prompts = []
    for sid, rating, text in rows[: n_train + n_test]:
        opening = " ".join(text.split()[: rng.randint(4, 8)])
        prompts.append(
            {
                "prompt": [{"role": "user", "content": PROMPT_TEMPLATE.format(opening=opening)}],
                "opening": opening,
                "snippet_id": sid,
                "human_rating": rating,
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out / "prompts_train.jsonl", prompts[:n_train])
    _write_jsonl(out / "prompts_test.jsonl", prompts[n_train:])
    console.print(f"wrote {n_train} train and {n_test} test prompts to {out}")


def build_positive_review_pairs(
    out: Path = HERE / "positive_review",
    samples: int = 4,
    max_new_tokens: int = 32,
    batch_size: int = 128,
    seed: int = 0,
    limit: int | None = None,
) -> None:
    from duelist.config import ModelConfig
    from duelist.data.tokenize import PairTokenizer
    from duelist.judges.lexicon import sentiment
    from duelist.models.load import load_model
    from duelist.sample.generate import sample

    prompts = [json.loads(l) for l in (out / "prompts_train.jsonl").read_text().splitlines()][:limit]
    model, tok = load_model(ModelConfig(name="default", dtype="float32"))
    enc = PairTokenizer(tok)
    ids = [enc.encode_prompt(p["prompt"]) for p in prompts]
    comps = sample(
        model, tok, ids, samples, max_new_tokens, 1.0, batch_size, seed, progress=True, description="sampling pairs"
    )
    scores = sentiment([c.text for c in comps])
    pairs = []
    for i, p in enumerate(prompts):
        group = list(range(i * samples, (i + 1) * samples))
        best = max(group, key=lambda j: scores[j])
        worst = min(group, key=lambda j: scores[j])
        if scores[best] == scores[worst] or comps[best].text == comps[worst].text:
            continue
        pairs.append(
            {
                "prompt": p["prompt"],
                "chosen": [{"role": "assistant", "content": comps[best].text}],
                "rejected": [{"role": "assistant", "content": comps[worst].text}],
                "score_chosen": float(scores[best]),
                "score_rejected": float(scores[worst]),
            }
        )
    _write_jsonl(out / "pairs_train.jsonl", pairs)
    console.print(f"wrote {len(pairs)} pairs from {len(prompts)} prompts to {out / 'pairs_train.jsonl'}")


def build_hh_harmless(source: Path, out: Path = HERE / "hh_harmless", n_test: int = 200, seed: int = 0) -> None:
    """Split Anthropic HH-RLHF harmless-base records into train/test (seeded), dropping records that fail
    validation (e.g. an empty chosen response) and saying which."""
    import gzip

    from duelist.data.formats import validate
    from duelist.data.sources import read_records

    records = read_records(str(source))
    checked = validate(records, on_invalid="skip")
    for err in checked.skipped:
        console.print(f"dropped: {err}")
    keep = {e.number for e in checked.examples}
    rows = [dict(r.data) for r in records if r.number in keep]
    random.Random(seed).shuffle(rows)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("test.jsonl.gz", rows[:n_test]), ("train.jsonl.gz", rows[n_test:])):
        tmp = out / (name + ".tmp")
        with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=9) as f:
            for r in part:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        tmp.replace(out / name)
    console.print(f"wrote {len(rows) - n_test} train and {n_test} test pairs to {out}")


def build_positive_review(source: Path | None, out: Path, samples: int = 4, limit: int | None = None) -> None:
    """Prompts (only when the movie-snippets ``source`` is given), then pairs."""
    if source is not None:
        build_positive_review_prompts(source, out)
    build_positive_review_pairs(out, samples=samples, limit=limit)


def _build_hh(source: Path | None, out: Path, **_: object) -> None:
    if source is None:
        raise FileNotFoundError("hh-harmless is built from the HH-RLHF file: pass --source test-a.jsonl.gz")
    build_hh_harmless(source, out)


BUILDERS = {
    "positive-review": build_positive_review,
    "hh-harmless": _build_hh,
    "intransitive-review": build_intransitive_review,
    "finegrained-qa": build_finegrained_qa,
    "plural-review": build_plural_review,
}
