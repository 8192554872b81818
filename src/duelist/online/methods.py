"""The online self-play methods: how each turns a round's judged samples into examples, and what it trains.

Every method samples K responses per prompt from the current policy π_t and asks the judge for their K×K
preference matrix; the win-rate of sample i is its mean preference over the K − 1 others, an unbiased
estimate of P(y_i ≻ π_t) (``duelist.sample.pairing``). What differs is below; the twin named with each is
the tabular update it reproduces exactly on a one-token model with exact win-rates (tests/online).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from duelist.data.tokenize import Example
from duelist.online.registry import Twin, register_method
from duelist.sample import pairing as pair
from duelist.sample.pairing import JudgedGroup

Positive = Annotated[float, Field(gt=0)]
K = Annotated[int, Field(ge=2)]
Rounds = Annotated[int, Field(ge=0)]


def _pairs(groups: Sequence[JudgedGroup], pairing: str, margin: float | None = None) -> list[Example]:
    if pairing == "all":
        return [e for g in groups for e in pair.all_pairs(g)]
    return [e for g in groups for e in pair.best_vs_worst(g, margin)]


@register_method(
    "online_dpo",
    paper="Guo et al. 2024, Direct Language Model Alignment from Online AI Feedback (OAIF); TRL's OnlineDPOTrainer",
    rule="K samples of π_t; chosen = best, rejected = worst by the judge; DPO against π_ref",
    loss=lambda p: {"name": "dpo", "beta": p["beta"]},
    reference="initial",
)
def online_dpo(
    groups: Sequence[JudgedGroup], *, beta: Positive = 0.1, samples: K = 2, refresh_every: Rounds = 0
) -> list[Example]:
    """Online DPO: the best and the worst of K samples by win-rate (at K = 2 with a reward judge, TRL's
    rule: the higher score is chosen, ties to the first), trained with the DPO loss against the initial
    policy (moved to the current policy every ``refresh_every`` rounds if > 0). β = 0.1 as in TRL."""
    return _pairs(groups, "best_vs_worst")


@register_method(
    "online_ipo",
    paper="Calandriello et al. 2024, Human Alignment of Large Language Models through Online Preference "
    "Optimisation (online IPO)",
    rule="K samples of π_t; best vs worst (hard label) or all pairs (soft label P); IPO against π_ref",
    loss=lambda p: {"name": "ipo", "beta": p["beta"], "labels": "hard" if p["pairing"] == "best_vs_worst" else "soft"},
    reference="initial",
    twin=Twin("online_ipo", lambda p: (1.0 / p["beta"], p["beta"]), {"pairing": "all", "refresh_every": 0}),
)
def online_ipo(
    groups: Sequence[JudgedGroup],
    *,
    beta: Positive = 0.1,
    samples: K = 2,
    pairing: Literal["best_vs_worst", "all"] = "best_vs_worst",
    refresh_every: Rounds = 0,
) -> list[Example]:
    """Online IPO: IPO's squared loss on the policy's own judged samples, against π_ref (β is IPO's τ).
    ``pairing=all`` uses every pair with the judge's probability as a soft label, the sampled form of the
    population loss E_{y,y'~π_t}(h(y, y') − (P(y ≻ y') − ½)/τ)², whose exact minimiser is
    π_{t+1} ∝ π_ref exp(P(y ≻ π_t)/τ) (the ``online_ipo`` twin with ητ = 1)."""
    return _pairs(groups, pairing)


@register_method(
    "sppo",
    paper="Wu et al. 2024, Self-Play Preference Optimization for Language Model Alignment, Algorithm 1",
    rule="K samples of π_t; each regresses log π/π_t onto η(P̂(y ≻ π_t) − ½), P̂ from the K − 1 others",
    loss=lambda p: {"name": "sppo_sample", "beta": 1.0 / p["eta"]},
    reference="previous",
    twin=Twin("sppo_loss", lambda p: (p["eta"], 0.0), {}),
)
def sppo(groups: Sequence[JudgedGroup], *, eta: Positive = 1000.0, samples: K = 5) -> list[Example]:
    """SPPO: every sample's log-ratio against the previous iterate is pulled onto η(P̂ − ½), with P̂ its
    win-rate among the prompt's other samples (Algorithm 1 over all K samples; the released code keeps only
    the best and the worst). η = 1000 and K = 5 are the paper's."""
    return [e for g in groups for e in pair.samples(g)]


@register_method(
    "dno",
    paper="Rosset et al. 2024, Direct Nash Optimization (DNO-Prct; Algorithm 1 with pairing=all)",
    rule="K samples of π_t; best vs worst by win-rate if their gap ≥ margin (or all pairs, soft labels "
    "σ(r_i − r_j)); DPO against π_t",
    loss=lambda p: {"name": "dpo", "beta": p["beta"], "labels": "hard" if p["pairing"] == "large_margin" else "soft"},
    reference="previous",
    twin=Twin("dno", lambda p: (p["beta"], 0.0), {"pairing": "all"}),
)
def dno(
    groups: Sequence[JudgedGroup],
    *,
    beta: Positive = 0.1,
    samples: K = 5,
    pairing: Literal["large_margin", "all"] = "large_margin",
    margin: Annotated[float, Field(ge=0, le=1)] = 0.5,
) -> list[Example]:
    """DNO: batched on-policy rounds with the previous iterate as reference. ``large_margin`` (DNO-Prct):
    the best and worst sample by win-rate, kept only if their win-rates differ by ≥ ``margin``, trained with
    DPO. ``all`` (Algorithm 1): every pair with the soft label σ(r_i − r_j), whose minimiser is
    π_{t+1} ∝ π_t exp(r_t/β), r_t(y) = P(y ≻ π_t) (soft policy iteration; the ``dno`` twin with η = β).
    The margin default is our choice (the paper's threshold is not confirmed here): half the win-rate scale."""
    if pairing == "all":
        return [e for g in groups for e in pair.all_pairs(g, _logistic_win_rate_gap)]
    return _pairs(groups, pairing, margin)


def _logistic_win_rate_gap(g: JudgedGroup, i: int, j: int) -> float:
    r = g.win_rates
    return float(1.0 / (1.0 + np.exp(-(r[i] - r[j]))))


@register_method(
    "inpo",
    paper="Zhang et al. 2025, Iterative Nash Policy Optimization: Aligning LLMs with General Preferences via "
    "No-Regret Learning",
    rule="K samples of π_t, every pair with its soft label; (h(y) − h(y') − η(P − ½))², "
    "h = log π − ητ log π_ref − (1−ητ) log π_t",
    loss=lambda p: {"name": "inpo", "eta": p["eta"], "tau": p["tau"], "labels": "soft"},
    reference="initial",
    anchors=("previous",),
    twin=Twin("inpo", lambda p: (p["eta"], p["tau"]), {"refresh_every": 0}),
)
def inpo(
    groups: Sequence[JudgedGroup],
    *,
    eta: Positive = 5.0,
    tau: Annotated[float, Field(ge=0)] = 0.1,
    samples: K = 2,
    refresh_every: Rounds = 0,
) -> list[Example]:
    """INPO: online mirror descent on the τ-regularised game, π_{t+1} ∝ π_t^{1−ητ} π_ref^{ητ} exp(η P(y ≻ π_t)),
    through a loss that needs no win-rate estimates: every pair of the K samples with the judge's probability
    as a soft label (K = 2: the one pair). Reference π_ref; π_t's log-probs are an anchor field."""
    if eta * tau > 1:
        raise ValueError(f"inpo needs eta·tau ≤ 1 (got {eta}·{tau} = {eta * tau:g})")
    return _pairs(groups, "all")


@register_method(
    "spo",
    paper="Swamy et al. 2024, A Minimaximalist Approach to Reinforcement Learning from Human Feedback (SPO)",
    rule="K samples of π_t; reward = win proportion among the others; proximal policy gradient with a "
    "baseline, KL 1/η to π_t",
    loss=lambda p: {"name": "pg", "beta": 1.0 / p["eta"]},
    reference="previous",
    twin=Twin("spo", lambda p: (p["eta"], 0.0), {}),
)
def spo(groups: Sequence[JudgedGroup], *, eta: Positive = 1.0, samples: K = 4) -> list[Example]:
    """SPO: each sample's reward is its win proportion against the prompt's other K − 1 samples; the update
    is a policy-gradient step with the mean reward as baseline and a KL(π‖π_t)/η proximal term, whose exact
    solution is the multiplicative-weights step π_{t+1} ∝ π_t exp(η r) (the no-regret learner SPO's
    guarantee assumes). η = 1 is our choice (the paper's experiments are continuous control)."""
    return [e for g in groups for e in pair.samples(g)]
