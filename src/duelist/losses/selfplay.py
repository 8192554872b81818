"""Self-play preference optimisation: regress each response's log-ratio onto its estimated win-rate.

SPPO's reference is the previous iterate π_t (for one offline pass, the initial policy). The win-rate
estimate P̂(y ≻ π_t | x) comes with the data, as per-pair fields ``p_win`` (chosen) and ``p_lose``
(rejected), or is derived from per-response scores (``win_rates=from_scores``, see
``win_rates_from_scores``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import torch
from pydantic import Field
from torch import Tensor

from duelist.losses.registry import register_loss
from duelist.losses.stats import LossOutput, PreferenceStats, reward_metrics

Beta = Annotated[float, Field(gt=0)]


def win_rates_from_scores(score_chosen: Tensor, score_rejected: Tensor, scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """SPPO's win-rate estimator on the two scored responses of a pair, with a Bradley–Terry link.

    SPPO estimates P̂(y_i ≻ π_t) = (1/K) Σ_j P(y_i ≻ y_j) over K samples of π_t, the sample itself
    included (it contributes ½), with P(i ≻ j) = σ(s_i − s_j) from PairRM scores. A pair gives K = 2
    samples: p_win = ½(½ + σ(d)) and p_lose = ½(½ + σ(−d)) with d = (s_w − s_l)/scale; p_win + p_lose = 1.
    """
    d = (score_chosen - score_rejected) / scale
    return 0.25 + 0.5 * torch.sigmoid(d), 0.25 + 0.5 * torch.sigmoid(-d)


def _sppo_fields(params: Mapping[str, Any]) -> tuple[str, ...]:
    return ("p_win", "p_lose") if params["win_rates"] == "given" else ("score_chosen", "score_rejected")


@register_loss(
    "sppo",
    paper="Wu et al. 2024, Self-Play Preference Optimization for Language Model Alignment, eq. 4.7",
    formula="½[(ρ_w − (p_win − ½)/β)² + (ρ_l − (p_lose − ½)/β)²]",
    extra_fields=_sppo_fields,
    field_bounds={"p_win": (0.0, 1.0), "p_lose": (0.0, 1.0)},
)
def sppo(
    s: PreferenceStats,
    *,
    beta: Beta = 0.001,
    win_rates: Literal["given", "from_scores"] = "given",
    score_scale: Annotated[float, Field(gt=0)] = 1.0,
) -> LossOutput:
    """SPPO: square loss pulling ρ(y) = log π_θ(y)/π_t(y) onto η(P̂(y ≻ π_t) − ½), with η = 1/β.

    The −½ approximates the log-partition η/2. The per-pair minimiser is ρ_w = (p_win − ½)/β,
    ρ_l = (p_lose − ½)/β. β = 0.001 (η = 1000) is the official code's default. ``win_rates=given``
    reads the fields ``p_win``/``p_lose``; ``from_scores`` derives them from ``score_chosen``/
    ``score_rejected`` with ``win_rates_from_scores(…, score_scale)``.
    """
    rho_w, rho_l = s.log_ratios()
    if win_rates == "given":
        p_win, p_lose = s.get_extra("p_win", rho_w), s.get_extra("p_lose", rho_l)
    else:
        p_win, p_lose = win_rates_from_scores(
            s.get_extra("score_chosen", rho_w), s.get_extra("score_rejected", rho_l), score_scale
        )
    losses = ((rho_w - (p_win - 0.5) / beta) ** 2 + (rho_l - (p_lose - 0.5) / beta) ** 2) / 2
    metrics = {
        **reward_metrics(beta * rho_w, beta * rho_l),
        "sppo/p_win": p_win.detach(),
        "sppo/p_lose": p_lose.detach(),
    }
    return LossOutput(losses, metrics)


@register_loss(
    "sppo_hard",
    paper="Wu et al. 2024 (SPPO) with hard win-rates P = 1 / 0, as in trl's sppo_hard",
    formula="(ρ_w − 1/(2β))² + (ρ_l + 1/(2β))²",
)
def sppo_hard(s: PreferenceStats, *, beta: Beta = 0.001) -> LossOutput:
    """SPPO with the winner's win-rate set to 1 and the loser's to 0 (trl's form: the two squares are
    not halved). Minimiser ρ_w = 1/(2β), ρ_l = −1/(2β). β = 0.001 is SPPO's default."""
    rho_w, rho_l = s.log_ratios()
    losses = (rho_w - 0.5 / beta) ** 2 + (rho_l + 0.5 / beta) ** 2
    return LossOutput(losses, reward_metrics(beta * rho_w, beta * rho_l))
