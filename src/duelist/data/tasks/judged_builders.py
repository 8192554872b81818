"""Builders for the intransitive-review and finegrained-qa tasks (``duelist tasks build NAME``).

intransitive-review (no source file needed):
1. ``samples_test.jsonl``: for the first ``limit`` (200) test prompts of positive-review, ``samples``
   (3) completions of the default model (24 new tokens, temperature 1, seed 0): 200 triples of real
   samples, the fixture on which the intransitive judge's Condorcet cycles are counted.
2. ``pairs_train.jsonl``: positive-review's training pairs (two default-model samples per training
   prompt) relabelled by the intransitive judge; pairs it ties are dropped. No new sampling.

finegrained-qa (``--source dev_feedback.json`` of FineGrainedRLHF's qa-feedback, Apache-2.0):
1. ``train.jsonl.gz`` / ``test.jsonl.gz``: every human non-tie pairwise label becomes a preference pair
   (prompt = instruction + passages + question as one user turn, chosen/rejected = the preferred and
   the other answer as assistant turns). The 6 labels of a question compare predictions
   (1,2), (1,3), (1,4), (2,3), (2,4), (3,4); 1 = the first is preferred, 2 = the second, 0 = no
   preference (FineGrainedRLHF tasks/qa_feedback/data/README.md). Questions are split at random
   (seed 0): 100 held-out questions, so no question has pairs on both sides.
2. ``questions_test.jsonl.gz``: the held-out questions with their 4 answers and 6 labels, for reranking.
3. ``lm_scores.jsonl`` (only with ``--limit N``: the first N held-out questions): the default model's
   generative and discriminative scores of each candidate, the input
   of equilibrium ranking (see ``duelist.sample.equilibrium_ranking.lm_scores``).
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console

from duelist.data.tasks import HERE

console = Console(stderr=True)

PAIR_ORDER = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
QA_INSTRUCTION = "Answer the question using the passages below. Mention every interpretation of the question."


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(tmp, "wt", encoding="utf-8") as f:  # type: ignore[operator]
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        return [json.loads(line) for line in f if line.strip()]


# ---------------------------------------------------------------- intransitive-review


def build_intransitive_samples(
    out: Path = HERE / "intransitive_review",
    n_prompts: int = 200,
    samples: int = 3,
    max_new_tokens: int = 24,
    batch_size: int = 50,
    seed: int = 0,
) -> None:
    from duelist.config import ModelConfig
    from duelist.data.tokenize import PairTokenizer
    from duelist.models.load import load_model
    from duelist.sample.generate import sample

    prompts = _read_jsonl(out / "prompts_test.jsonl")[:n_prompts]
    model, tok = load_model(ModelConfig(name="default", dtype="float32"))
    enc = PairTokenizer(tok)
    ids = [enc.encode_prompt(p["prompt"]) for p in prompts]
    comps = sample(
        model, tok, ids, samples, max_new_tokens, 1.0, batch_size, seed, progress=True, description="sampling triples"
    )
    rows = []
    for i, p in enumerate(prompts):
        group = comps[i * samples : (i + 1) * samples]
        rows.append(
            {
                "prompt": p["prompt"],
                "opening": p["opening"],
                "samples": [c.text for c in group],
                "logprobs": [round(c.logprob, 4) for c in group],
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out / "samples_test.jsonl", rows)
    console.print(f"wrote {len(rows)} × {samples} samples to {out / 'samples_test.jsonl'}")


def build_intransitive_pairs(out: Path = HERE / "intransitive_review") -> None:
    from duelist.judges.intransitive import MajorityJudge

    judge = MajorityJudge()
    src = _read_jsonl(HERE / "positive_review" / "pairs_train.jsonl")
    a = [r["chosen"][-1]["content"] for r in src]
    b = [r["rejected"][-1]["content"] for r in src]
    p = judge.prob([""] * len(a), a, b)
    rows = []
    for r, pa in zip(src, p, strict=True):
        if pa == 0.5:
            continue
        win, lose = (r["chosen"], r["rejected"]) if pa > 0.5 else (r["rejected"], r["chosen"])
        rows.append({"prompt": r["prompt"], "chosen": win, "rejected": lose})
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out / "pairs_train.jsonl", rows)
    shutil.copyfile(HERE / "positive_review" / "LICENSE-movie-snippets.txt", out / "LICENSE-movie-snippets.txt")
    console.print(f"wrote {len(rows)} relabelled pairs ({len(src) - len(rows)} ties dropped) to {out}")


def build_intransitive_review(source: Path | None, out: Path, samples: int = 4, limit: int | None = None) -> None:
    """Relabelled pairs, then the triples fixture (always 3 samples per prompt: a triple; ``samples`` is
    the CLI's pairs option and is not used here) for the first ``limit`` (default 200) test prompts."""
    build_intransitive_pairs(out)
    build_intransitive_samples(out, n_prompts=limit or 200)


# ---------------------------------------------------------------- finegrained-qa


def qa_prompt(question: str, passages: list[list[str]], max_passage_words: int | None = None) -> str:
    """The user turn: instruction, the passages (title then sentences), the question."""
    parts = [QA_INSTRUCTION, ""]
    for k, p in enumerate(passages, 1):
        text = " ".join(s.strip() for s in p[1:])
        if max_passage_words is not None:
            text = " ".join(text.split()[:max_passage_words])
        parts.append(f"Passage {k} ({p[0].strip()}): {text}")
    parts += ["", f"Question: {question.strip()}"]
    return "\n".join(parts)


def qa_pairs(record: dict[str, Any]) -> list[tuple[int, int]]:
    """(winner, loser) answer indices (0-based) of a record's non-tie human labels."""
    out = []
    for (i, j), lab in zip(PAIR_ORDER, record["preference"], strict=True):
        if lab == 1:
            out.append((i, j))
        elif lab == 2:
            out.append((j, i))
        elif lab != 0:
            raise ValueError(f"unexpected preference label {lab!r}")
    return out


def build_finegrained_qa_data(source: Path, out: Path = HERE / "finegrained_qa", n_test: int = 100, seed: int = 0):
    records = json.loads(Path(source).read_text(encoding="utf-8"))
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    test_ids = set(order[:n_test])
    train_rows, test_rows, questions = [], [], []
    for qid, r in enumerate(records):
        answers = [r[f"prediction {k}"].strip() for k in range(1, 5)]
        prompt = [{"role": "user", "content": qa_prompt(r["question"], r["passages"])}]
        rows = test_rows if qid in test_ids else train_rows
        for w, l in qa_pairs(r):
            if answers[w] == answers[l]:
                continue
            rows.append(
                {
                    "prompt": prompt,
                    "chosen": [{"role": "assistant", "content": answers[w]}],
                    "rejected": [{"role": "assistant", "content": answers[l]}],
                    "question_id": qid,
                    "answers": [w + 1, l + 1],
                }
            )
        if qid in test_ids:
            questions.append(
                {
                    "question_id": qid,
                    "question": r["question"],
                    "passages": r["passages"],
                    "answers": answers,
                    "preference": list(r["preference"]),
                }
            )
    questions.sort(key=lambda q: order.index(q["question_id"]))
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out / "train.jsonl.gz", train_rows)
    _write_jsonl(out / "test.jsonl.gz", test_rows)
    _write_jsonl(out / "questions_test.jsonl.gz", questions)
    licence = Path(source).parent / "LICENSE"
    if licence.is_file():
        shutil.copyfile(licence, out / "LICENSE")
    console.print(
        f"wrote {len(train_rows)} train pairs ({len(records) - n_test} questions), {len(test_rows)} test pairs "
        f"and {len(questions)} held-out questions to {out}"
    )


def build_finegrained_qa(source: Path | None, out: Path, samples: int = 4, limit: int | None = None) -> None:
    """Pairs from ``source`` when given; LM scores of the first ``limit`` held-out questions when given."""
    if source is None and limit is None:
        raise FileNotFoundError(
            "finegrained-qa is built from FineGrainedRLHF's dev_feedback.json: pass --source dev_feedback.json "
            "(and/or --limit N to score the first N held-out questions with the default model)"
        )
    if source is not None:
        build_finegrained_qa_data(source, out)
    if limit is not None:
        from duelist.sample.equilibrium_ranking import build_lm_scores

        build_lm_scores(out / "questions_test.jsonl.gz", out / "lm_scores.jsonl", limit=limit)
