"""Built-in tasks: data shipped inside the package, with licences, and the oracle that judges them.

``duelist tasks`` lists them; a task name can stand wherever a data source is expected
(``data.train: positive-review``), and ``<task>:<split>`` names one of its splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    folder: str
    splits: dict[str, str]  # split name → file inside the folder
    judge: str | None  # oracle judge name (None: human labels only)
    licences: tuple[str, ...] = ()
    prompt_splits: tuple[str, ...] = field(default=("test",))

    def path(self, split: str) -> Path:
        if split not in self.splits:
            raise KeyError(f"task {self.name!r} has no split {split!r}; splits: {', '.join(self.splits)}")
        return HERE / self.folder / self.splits[split]


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task(
            name="positive-review",
            description=(
                "Controlled sentiment (the DPO paper's IMDb task, offline): continue a movie-review opening "
                "positively. Pairs are two samples of SmolLM2-135M-Instruct (best and worst of 4) "
                "ranked by the VADER lexicon."
            ),
            folder="positive_review",
            splits={"train": "pairs_train.jsonl", "prompts": "prompts_train.jsonl", "test": "prompts_test.jsonl"},
            judge="lexicon",
            licences=("LICENSE-movie-snippets.txt",),
        ),
        Task(
            name="hh-harmless",
            description=(
                "Real human preference pairs from Anthropic HH-RLHF (harmless-base test split, 1,500-record "
                "random subset; 2 records with an empty response removed), implicit-prompt format, split into "
                "train and a 200-pair held-out test set. Red-team content: often offensive."
            ),
            folder="hh_harmless",
            splits={"train": "train.jsonl.gz", "test": "test.jsonl.gz"},
            judge=None,
            licences=("LICENSE",),
        ),
        Task(
            name="intransitive-review",
            description=(
                "positive-review's prompts judged by an intransitive oracle: a majority vote of sentiment, "
                "brevity and lexical variety, which forms Condorcet cycles. Training pairs are positive-review's "
                "pairs relabelled by that vote (ties dropped); 'samples' holds 200 triples of default-model "
                "samples on test prompts."
            ),
            folder="intransitive_review",
            splits={
                "train": "pairs_train.jsonl",
                "prompts": "prompts_train.jsonl",
                "test": "prompts_test.jsonl",
                "samples": "samples_test.jsonl",
            },
            judge="intransitive",
            licences=("LICENSE-movie-snippets.txt",),
        ),
        Task(
            name="finegrained-qa",
            description=(
                "Real human pairwise labels from FineGrainedRLHF's qa-feedback dev set (ASQA questions with "
                "Wikipedia passages, 4 model answers each): every non-tie label is a pair; 400 training and 100 "
                "held-out questions. 'questions' keeps the held-out questions' 4 answers for reranking."
            ),
            folder="finegrained_qa",
            splits={"train": "train.jsonl.gz", "test": "test.jsonl.gz", "questions": "questions_test.jsonl.gz"},
            judge=None,
            licences=("LICENSE",),
        ),
        Task(
            name="plural-review",
            description=(
                "Per-user labels: 50 simulated users, each a mixture of the population judge's groups (a primary group "
                "by share, 20% Dirichlet mix), label pairs of default-model samples through their own Bradley-Terry "
                "reward. 'train': users 0-39, positive-review's 1,024 training pairs labelled by 2 users each; "
                "held-out users 40-49 on test prompts: 'fit' (10 pairs each, few-shot) and 'test' (50 each). Records "
                "carry user, group, weights, p_user."
            ),
            folder="plural_review",
            splits={"train": "train.jsonl.gz", "fit": "fit.jsonl.gz", "test": "test.jsonl.gz"},
            judge="population",
            licences=("LICENSE-movie-snippets.txt",),
        ),
    ]
}


def names() -> list[str]:
    return sorted(TASKS)


def split_spec(spec: str) -> tuple[str, str | None]:
    name, _, split = spec.partition(":")
    return name, split or None


def is_task(spec: str) -> bool:
    return split_spec(spec)[0] in TASKS


def get(spec: str) -> Task:
    name = split_spec(spec)[0]
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; built-in tasks: {', '.join(names())}")
    return TASKS[name]


def data_file(spec: str, split: str = "train") -> Path:
    """The file of ``spec`` (``task`` or ``task:split``; an explicit split wins over ``split``)."""
    _, explicit = split_spec(spec)
    return get(spec).path(explicit or split)
