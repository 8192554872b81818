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
    twin=Twin("online_ipo", lambda p: {"eta": 1.0 / p["beta"], "tau": p["beta"]},
              {"pairing": "all", "refresh_every": 0}),
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
    twin=Twin("sppo_loss", lambda p: {"eta": p["eta"], "tau": 0.0}, {}),
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
    twin=Twin("dno", lambda p: {"eta": p["beta"], "tau": 0.0}, {"pairing": "all"}),
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
    twin=Twin("inpo", lambda p: {"eta": p["eta"], "tau": p["tau"]}, {"refresh_every": 0}),
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
    twin=Twin("spo", lambda p: {"eta": p["eta"], "tau": 0.0}, {}),
)
def spo(groups: Sequence[JudgedGroup], *, eta: Positive = 1.0, samples: K = 4) -> list[Example]:
    """SPO: each sample's reward is its win proportion against the prompt's other K − 1 samples; the update
    is a policy-gradient step with the mean reward as baseline and a KL(π‖π_t)/η proximal term, whose exact
    solution is the multiplicative-weights step π_{t+1} ∝ π_t exp(η r) (the no-regret learner SPO's
    guarantee assumes). η = 1 is our choice (the paper's experiments are continuous control)."""
    return [e for g in groups for e in pair.samples(g)]


def _step_size_ok(eta: float, tau: float) -> None:
    if eta * tau > 1:
        raise ValueError(f"needs eta·tau ≤ 1 (got {eta}·{tau} = {eta * tau:g})")


@register_method(
    "nash_md",
    paper="Munos et al. 2024, Nash Learning from Human Feedback (Nash-MD)",
    rule="K samples of π_t judged against samples of ν ∝ π_t^{1−ητ} π_ref^{ητ} (token-level mixture); "
    "proximal policy gradient toward ν·exp(η P(y ≻ ν))",
    loss=lambda p: {"name": "pg", "beta": 1.0 / p["eta"], "anchor": "field"},
    reference="previous",
    opponent="mixture",
    mixture=lambda p: p["eta"] * p["tau"],
    twin=Twin("nash_md", lambda p: {"eta": p["eta"], "tau": p["tau"]}, {}),
)
def nash_md(
    groups: Sequence[JudgedGroup],
    *,
    eta: Positive = 5.0,
    tau: Positive = 0.1,
    samples: K = 2,
    opponents: Annotated[int, Field(ge=1)] = 2,
) -> list[Example]:
    """Nash mirror descent: the opponent ν_t samples from the token-level geometric mixture of the policy and
    the reference (logits (1−β)·log π_t + β·log π_ref renormalised at every token, β = ητ, both models with
    their own KV cache); each policy sample's advantage is its win-rate against ν's samples minus the
    baseline, and the update is the proximal policy-gradient step whose exact solution is Nash-MD's
    π_{t+1} ∝ ν_t exp(η P(y ≻ ν_t)) (pg loss with anchor ν: KL(π‖ν_t)/η). With a fixed η the iterates
    converge to Nash-MD's biased fixed point (games: ``nash_md``). Defaults: τ = 0.1 and ητ = 0.5 are TRL's
    beta and mixture_coef (the paper's values are not confirmed here)."""
    _step_size_ok(eta, tau)
    return [e for g in groups for e in pair.samples(g)]


@register_method(
    "egpo",
    paper="Zhou, Fazel, Du 2025, Extragradient Preference Optimization (EGPO)",
    rule="half step: INPO's loss on samples of π_t; full step from the saved π_t (weights and optimizer "
    "state) on samples of the half-step policy",
    loss=lambda p: {"name": "inpo", "eta": p["eta"], "tau": p["tau"], "labels": "soft"},
    reference="initial",
    anchors=("previous",),
    extragradient=True,
    twin=Twin("egpo", lambda p: {"eta": p["eta"], "tau": p["tau"]}, {"refresh_every": 0}),
)
def egpo(
    groups: Sequence[JudgedGroup],
    *,
    eta: Positive = 5.0,
    tau: Positive = 0.1,
    samples: K = 2,
    refresh_every: Rounds = 0,
) -> list[Example]:
    """Extragradient: π_{t+½} ∝ π_t^{1−ητ} π_ref^{ητ} e^{η P(y ≻ π_t)}, then π_{t+1} ∝ π_t^{1−ητ} π_ref^{ητ}
    e^{η P(y ≻ π_{t+½})}, each step the INPO-form squared loss (EGPO's online-IPO regression of log-ratio
    differences onto preference differences, with π_t in the anchor so that a finite step is its exact
    minimiser). The full step restarts from the saved weights and optimizer state, as EGPO's trainer does."""
    _step_size_ok(eta, tau)
    return _pairs(groups, "all")


@register_method(
    "nash_mp",
    paper="Tiapkin et al. 2025, Accelerating Nash Learning from Human Feedback via Mirror Prox (Nash-MP)",
    rule="mirror prox: x_{k+½} = c(Pπ_k/τ + log π_ref) + (1−c)x_k, x_{k+1} the same with π_{k+½}; "
    "c = η/(1+η); each a squared-loss step",
    loss=lambda p: {"name": "inpo", "eta": p["eta"] / (1 + p["eta"]) / p["tau"], "tau": p["tau"], "labels": "soft"},
    reference="initial",
    anchors=("previous",),
    extragradient=True,
    twin=Twin("nash_mp", lambda p: {"eta": p["eta"], "tau": p["tau"]}, {"refresh_every": 0}),
)
def nash_mp(
    groups: Sequence[JudgedGroup],
    *,
    eta: Positive = 0.2,
    tau: Positive = 0.1,
    samples: K = 2,
    refresh_every: Rounds = 0,
) -> list[Example]:
    """Nash mirror prox with regularisation τ (the paper's β) and prox step η: both half and full step are
    KL-prox steps whose closed form mixes x_k with the best-response logits by c = η/(1+η), i.e. an OMD step
    of size c/τ from π_k — the INPO-form loss with its η = c/τ. η = 2τ is the paper's choice for its rate
    (1+2τ)^{−N/2} in N preference queries."""
    return _pairs(groups, "all")


@register_method(
    "apo",
    paper="He, Yuan, Gu 2024, Accelerated Preference Optimization (APO), momentum over INPO's step",
    rule="INPO's round, then θ ← θ̂_t + α(θ̂_t − θ̂_{t−1}) over the rounds' un-extrapolated weights",
    loss=lambda p: {"name": "inpo", "eta": p["eta"], "tau": p["tau"], "labels": "soft"},
    reference="initial",
    anchors=("previous",),
    momentum=lambda p: p["alpha"],
    twin=Twin("apo", lambda p: {"eta": p["eta"], "tau": p["tau"], "alpha": p["alpha"]}, {"refresh_every": 0}),
)
def apo(
    groups: Sequence[JudgedGroup],
    *,
    eta: Positive = 5.0,
    tau: Positive = 0.1,
    alpha: Annotated[float, Field(ge=0, lt=1)] = 0.5,
    samples: K = 2,
    refresh_every: Rounds = 0,
) -> list[Example]:
    """APO: Nesterov-style extrapolation of the iterates, log π_{t+1} = (1+α) log π̂_{t+1} − α log π̂_t, done on
    the weights (exact for a table of logits; for a network an extrapolation of its parameters). α = 0 is
    INPO. α = 0.5 is the game lab's default (the paper's value is not confirmed here)."""
    _step_size_ok(eta, tau)
    return _pairs(groups, "all")


@register_method(
    "vpo",
    paper="Cen et al. 2024, Value-Incentivized Preference Optimization (online, optimistic)",
    rule="online DPO + αβ·E_{π_t}[log π_θ − log π_ref] on the policy's own samples (exploration)",
    loss=lambda p: {"name": "sum", "terms": [{"name": "dpo", "beta": p["beta"]},
                                             {"name": "optimism", "alpha": p["alpha"], "beta": p["beta"]}]},
    reference="initial",
)
def vpo(
    groups: Sequence[JudgedGroup],
    *,
    beta: Positive = 0.1,
    alpha: Annotated[float, Field(ge=0)] = 0.1,
    samples: K = 2,
    refresh_every: Rounds = 0,
) -> list[Example]:
    """VPO online: online DPO's pairs (at K = 2 both samples, so the bonus is an unbiased estimate over π_t)
    plus the value bonus, which lowers the likelihood of the policy's own samples against π_ref. α = 0 is
    online DPO bit for bit. α = 0.1 is our choice (the paper's is not confirmed here)."""
    return _pairs(groups, "best_vs_worst")


@register_method(
    "selm",
    paper="Zhang et al. 2024, Self-Exploring Language Models: Active Preference Elicitation for Online Alignment",
    rule="online DPO against the previous iterate + αβ(log π_θ − log π_t) on the policy's own samples",
    loss=lambda p: {"name": "sum", "terms": [{"name": "dpo", "beta": p["beta"]},
                                             {"name": "optimism", "alpha": p["alpha"], "beta": p["beta"]}]},
    reference="previous",
)
def selm(
    groups: Sequence[JudgedGroup], *, beta: Positive = 0.01, alpha: Annotated[float, Field(ge=0)] = 0.001,
    samples: K = 2,
) -> list[Example]:
    """SELM: each round is iterative DPO from the round's starting model (the reference is the previous
    iterate) with the optimistic term αβ(log π_θ(y) − log π_ref(y)) on that model's own responses. SELM's
    y_ref is its greedy response; here it is its samples (the pair, so no extra generation). β = 0.01 and
    α = 0.001 are the released recipes'."""
    return _pairs(groups, "best_vs_worst")
