"""Builder of the plural-review task (``duelist tasks build plural-review``): pairs labelled per user, by users
who are mixtures of the population judge's groups. No model is run and no source file is needed; the responses
are default-model samples already shipped with intransitive-review.

1. Users (seed 0): 50 users; user u's primary group g_u is drawn with the population's shares (enthusiasts 0.5,
   skimmers 0.3, stylists 0.2), and their weights over the groups are α_u = 0.8 · e_{g_u} + 0.2 · Dirichlet(1, 1, 1).
   Users 0–39 are training users, 40–49 are held out.
2. A user's reward is the mixture of the groups' rewards, r_u(y) = Σ_g α_ug r_g(y) (``PopulationJudge.group_rewards``:
   criteria in units of their typical spread), and their label a draw from Bradley–Terry at temperature 0.5,
   P_u(a ≻ b) = σ((r_u(a) − r_u(b)) / 0.5); the record keeps ``p_user`` = P_u(chosen ≻ rejected).
3. ``train.jsonl.gz``: each of intransitive-review's 1,024 chat pairs (two default-model samples per training prompt)
   is labelled by two distinct training users drawn at random: 2,048 records.
4. Held-out users label the three pairs of each of intransitive-review's 200 test triples (default-model samples on
   its chat test prompts: 600 pairs), 60 pairs per user, disjoint; each user's first 10 form ``fit.jsonl.gz``
   (few-shot data for localising a new user: PAL's weights, MaxMin's E-step) and the other 50 ``test.jsonl.gz``.

Each record: ``prompt``, ``chosen``, ``rejected`` (conversational), ``user``, ``group`` (primary group index),
``weights`` (α_u), ``p_user``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from scipy.special import expit

from duelist.data.tasks import HERE
from duelist.data.tasks.judged_builders import _read_jsonl, _write_jsonl

console = Console(stderr=True)

N_TRAIN_USERS, N_TEST_USERS = 40, 10
LABELS_PER_TRAIN_PAIR = 2
FIT_PER_USER = 10
MIX = 0.2
TEMPERATURE = 0.5


def draw_users(n: int, shares: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(primary group [n], weights over the groups [n, G]) of ``n`` users."""
    groups = rng.choice(len(shares), size=n, p=shares)
    weights = (1 - MIX) * np.eye(len(shares))[groups] + MIX * rng.dirichlet(np.ones(len(shares)), size=n)
    return groups, weights


def label(
    users: np.ndarray, weights: np.ndarray, ga: np.ndarray, gb: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's sampled label for their pair (True: a ≻ b) and P_u(a ≻ b); ``ga``/``gb`` [G, n] group rewards."""
    p = expit(np.einsum("ng,gn->n", weights[users], ga - gb) / TEMPERATURE)
    return rng.random(len(p)) < p, p


def _records(
    pairs: list[tuple[Any, str, str]], users: np.ndarray, groups: np.ndarray, weights: np.ndarray, rng
) -> list[dict[str, Any]]:
    from duelist.judges.population import PopulationJudge

    judge = PopulationJudge()
    ga = judge.group_rewards([""] * len(pairs), [a for _, a, _ in pairs])
    gb = judge.group_rewards([""] * len(pairs), [b for _, _, b in pairs])
    a_wins, p = label(users, weights, ga, gb, rng)
    rows = []
    for (prompt, a, b), u, win, pa in zip(pairs, users, a_wins, p, strict=True):
        chosen, rejected = (a, b) if win else (b, a)
        rows.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "user": int(u),
                "group": int(groups[u]),
                "weights": [round(float(w), 4) for w in weights[u]],
                "p_user": round(float(pa if win else 1 - pa), 4),
            }
        )
    return rows


def build_plural_review(
    source: Path | None = None, out: Path = HERE / "plural_review", samples: int = 4, limit: int | None = None
) -> None:
    """Write train/fit/test (module docstring); ``source``, ``samples`` and ``limit`` are the CLI's and unused."""
    from duelist.judges.population import PopulationJudge

    rng = np.random.default_rng(0)
    groups, weights = draw_users(N_TRAIN_USERS + N_TEST_USERS, PopulationJudge().shares, rng)

    train_src = _read_jsonl(HERE / "intransitive_review" / "chat_pairs_train.jsonl")
    train_pairs, train_users = [], []
    for r in train_src:
        for u in rng.choice(N_TRAIN_USERS, size=LABELS_PER_TRAIN_PAIR, replace=False):
            train_pairs.append((r["prompt"], r["chosen"][-1]["content"], r["rejected"][-1]["content"]))
            train_users.append(u)
    train = _records(train_pairs, np.array(train_users), groups, weights, rng)

    triples = _read_jsonl(HERE / "intransitive_review" / "samples_test.jsonl")
    test_pairs = [(t["prompt"], t["samples"][i], t["samples"][j]) for t in triples for i, j in ((0, 1), (0, 2), (1, 2))]
    order = rng.permutation(len(test_pairs))
    per_user = len(test_pairs) // N_TEST_USERS
    held_users = N_TRAIN_USERS + np.repeat(np.arange(N_TEST_USERS), per_user)
    held = _records([test_pairs[i] for i in order[: len(held_users)]], held_users, groups, weights, rng)
    fit = [r for i, r in enumerate(held) if i % per_user < FIT_PER_USER]
    test = [r for i, r in enumerate(held) if i % per_user >= FIT_PER_USER]

    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.jsonl.gz", train), ("fit.jsonl.gz", fit), ("test.jsonl.gz", test)):
        _write_jsonl(out / name, rows)
    shutil.copyfile(HERE / "positive_review" / "LICENSE-movie-snippets.txt", out / "LICENSE-movie-snippets.txt")
    console.print(
        f"wrote {len(train)} train, {len(fit)} fit and {len(test)} test records of {len(groups)} users to {out}"
    )
