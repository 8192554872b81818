"""Reproducible builders for the shipped task files (``duelist tasks build <task>``).

positive-review is a plain continuation task, as in the DPO paper's IMDb setting (the policy continues the
review's own text, so there is no assistant turn to drift into assistant talk):
1. prompts (with ``--source``, the VADER movie-snippets file): movie-review openings (the first 4–8 words
   of a snippet) as the plain text "Movie review: <opening>"; 1,024 training and 256 test prompts from
   disjoint snippets, chosen with a fixed seed (the same openings as the earlier chat version).
2. ``on_task.json`` (with ``--source``): the on-task classifier (``duelist.eval.on_task``): naive Bayes of
   movie-review snippets (all but the test prompts' snippets) against other text: the human and
   assistant turns of the shipped hh-harmless pairs and the questions and answers of the shipped
   finegrained-qa questions; 10% of each class (seeded) is held out to measure its accuracy.
3. pairs: for each of the first ``limit`` (512) training prompts, ``samples`` (16) continuations (32 new
   tokens, temperature 1) from the default model; the most and least positive under the lexicon become
   chosen and rejected. Sixteen rather than four: the best and worst of 16 differ by 1.50 in lexicon score
   on average against 0.98 for 4, so sentiment dominates the incidental differences between the two
   continuations and DPO buys more reward per nat of KL (docs/evaluation.md, "The main job's settings").
   Prompts whose samples all score the same are skipped.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from rich.console import Console

from duelist.data.tasks import HERE
from duelist.data.tasks.judged_builders import build_finegrained_qa, build_intransitive_review
from duelist.data.tasks.plural_builders import build_plural_review

PAIR_SAMPLES = 16  # continuations per prompt that positive-review's pairs are the best and worst of (step 3)

PROMPT_TEMPLATE = "Movie review: {opening}"
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
                "prompt": PROMPT_TEMPLATE.format(opening=opening),
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
    samples: int = PAIR_SAMPLES,
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
                "chosen": comps[best].text,
                "rejected": comps[worst].text,
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


def _other_texts() -> list[str]:
    """Text that is not a movie review: hh-harmless turns and finegrained-qa questions and answers (shipped)."""
    import gzip

    texts = []
    with gzip.open(HERE / "hh_harmless" / "train.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            turns = re.split(r"\n\n(?:Human|Assistant): ", r["chosen"])
            turns.append(r["rejected"].rsplit("\n\nAssistant: ", 1)[-1])
            texts.extend(t.strip() for t in turns if t.strip())
    with gzip.open(HERE / "finegrained_qa" / "questions_test.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            texts.extend([q["question"], *q["answers"]])
    return texts


def build_on_task(snippets: Path, out: Path = HERE / "positive_review", seed: int = 0) -> None:
    """The naive-Bayes on-task classifier (see the module docstring), with its held-out accuracy."""
    from duelist.eval.on_task import OnTaskClassifier

    test_ids = {json.loads(l)["snippet_id"] for l in (out / "prompts_test.jsonl").read_text().splitlines()}
    on = []
    for line in snippets.read_text(encoding="latin-1").splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0] not in test_ids:
            on.append(parts[2])
    off = _other_texts()
    rng = random.Random(seed)
    rng.shuffle(on)
    rng.shuffle(off)
    cut_on, cut_off = len(on) // 10, len(off) // 10
    held = OnTaskClassifier.fit(on[cut_on:], off[cut_off:])
    acc_on = float(held.on_task(on[:cut_on]).mean())
    acc_off = float(1 - held.on_task(off[:cut_off]).mean())
    about = {
        "what": "multinomial naive Bayes, movie review (on task) vs other text; alpha 1, min_count 2, equal priors",
        "on_task_text": f"{len(on)} VADER movie-review snippets (C.J. Hutto, MIT; LICENSE-movie-snippets.txt), "
        "the test prompts' snippets excluded",
        "other_text": f"{len(off)} texts: hh-harmless human/assistant turns (Anthropic HH-RLHF, MIT) and "
        "finegrained-qa questions and answers (FineGrainedRLHF, Apache-2.0)",
        "held_out_accuracy": {"on_task": round(acc_on, 4), "other": round(acc_off, 4), "share_held_out": 0.1},
        "built_by": "duelist tasks build positive-review --source movieReviewSnippets_GroundTruth.txt",
    }
    OnTaskClassifier.fit(on, off).save(out / "on_task.json", about)
    console.print(f"on-task classifier: held-out accuracy {acc_on:.3f} (reviews), {acc_off:.3f} (other text)")


def build_positive_review(source: Path | None, out: Path, samples: int = PAIR_SAMPLES, limit: int | None = 512) -> None:
    """Prompts and the on-task classifier (only when the movie-snippets ``source`` is given), then pairs."""
    if source is not None:
        build_positive_review_prompts(source, out)
        build_on_task(source, out)
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
