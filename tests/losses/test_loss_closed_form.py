"""Every registered loss against its formula, evaluated by hand at small inputs.

Shared inputs (two pairs): log π_θ(y_w) = [−3, −10], log π_θ(y_l) = [−5, −8], log π_ref(y_w) = [−4, −9],
log π_ref(y_l) = [−4.5, −8.5], |y_w| = [3, 5], |y_l| = [4, 5]; so ρ_w = [1, −1], ρ_l = [−0.5, 0.5] and
Δ = ρ_w − ρ_l = [1.5, −1.5]. ℓ(z) = −log σ(z) = log(1 + e^{−z}); σ(z) = 1/(1 + e^{−z}).

``CASES`` must name every registered loss: registering a loss without a closed-form case here fails
``test_every_registered_loss_has_a_closed_form_case``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from loss_fixtures import seq_stats

from duelist.losses import PreferenceStats, get_loss, registry
from duelist.losses.stats import SampleStats


def ell(z: float) -> float:
    return math.log1p(math.exp(-z))


def sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def base(**extra) -> PreferenceStats:
    return seq_stats([-3.0, -10.0], [-5.0, -8.0], [-4.0, -9.0], [-4.5, -8.5], [3, 5], [4, 5], **extra)


def samples(**extra) -> SampleStats:
    """Three single responses: log π_θ = [−3, −10, −5], log π_ref = [−4, −9, −4.5], so ρ = [1, −1, −0.5]."""
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return SampleStats(t([-3.0, -10.0, -5.0]), t([-4.0, -9.0, -4.5]), extra={k: t(v) for k, v in extra.items()})


def with_token_kl() -> PreferenceStats:
    """Per-token KL(π_ref ‖ π_θ): D_SeqKL(y_w) = [0.2, 0.1], D_SeqKL(y_l) = [0.3, 0.05]."""
    s = base()
    s.chosen_token_kl = torch.tensor([[0.15, 0.05], [0.1, 0.0]], dtype=torch.float64)
    s.rejected_token_kl = torch.tensor([[0.1, 0.2], [0.05, 0.0]], dtype=torch.float64)
    return s


def tgdpo_stats() -> PreferenceStats:
    """One pair, 3 positions (y_w has 2 tokens). Per token: ρ_w = [0.5, −0.2], ρ_l = [−0.2, 0.2, −0.5];
    r̂_w = log π_rm − log π_ref = [0.5, 0.8], r̂_l = [−0.5, 0, 0.5]."""

    def t(v):
        return torch.tensor([v], dtype=torch.float64)

    mc, mr = torch.tensor([[True, True, False]]), torch.tensor([[True, True, True]])
    pc, rc = t([-1.0, -2.0, 0.0]), t([-1.5, -1.8, 0.0])
    pr, rr = t([-1.0, -1.0, -2.0]), t([-0.8, -1.2, -1.5])
    return PreferenceStats(
        pc.sum(1), pr.sum(1), rc.sum(1), rr.sum(1), mc.sum(1).double(), mr.sum(1).double(),
        pc, pr, rc, rr, mc, mr,
        extra={"rm_chosen_token_logps": t([-1.0, -1.0, -7.0]), "rm_rejected_token_logps": t([-1.3, -1.2, -1.0])},
    )  # fmt: skip


def _sppo_scores() -> list[float]:
    """d = (0.6 − (−0.4))/0.5 = 2; p_win = ¼ + ½σ(2), p_lose = ¼ + ½σ(−2); β = 0.1."""
    pw, pl = 0.25 + 0.5 * sig(2.0), 0.25 + 0.5 * sig(-2.0)
    return [0.5 * ((1.0 - (pw - 0.5) / 0.1) ** 2 + (-0.5 - (pl - 0.5) / 0.1) ** 2)]


def _sppo_scores_stats() -> PreferenceStats:
    return seq_stats([-3.0], [-5.0], [-4.0], [-4.5], score_chosen=[0.6], score_rejected=[-0.4])


Case = tuple[dict, Callable[[], PreferenceStats], list[float]]

CASES: dict[str, list[Case]] = {
    # ℓ(βΔ), β = 0.1: ℓ(0.15), ℓ(−0.15)
    # soft labels p = [0.8, 0.3]: p ℓ(βΔ) + (1 − p) ℓ(−βΔ)
    "dpo": [
        ({"beta": 0.1}, base, [ell(0.15), ell(-0.15)]),
        ({"beta": 0.1, "labels": "soft"}, lambda: base(label=[0.8, 0.3]),
         [0.8 * ell(0.15) + 0.2 * ell(-0.15), 0.3 * ell(-0.15) + 0.7 * ell(0.15)]),
    ],
    # (Δ − 1/(2β))², β = 0.1: (1.5 − 5)² = 12.25, (−1.5 − 5)² = 42.25; length-normalised:
    # Δ = 1/3 + 0.5/4 = 0.458333…, −1/5 − 0.5/5 = −0.3
    "ipo": [
        ({"beta": 0.1}, base, [12.25, 42.25]),
        ({"beta": 0.1, "length_normalize": True}, base, [(1 / 3 + 0.125 - 5) ** 2, (-0.3 - 5) ** 2]),
        # soft p = [0.8, 0.3]: (Δ − (p − ½)/β)² = (1.5 − 3)², (−1.5 + 2)²
        ({"beta": 0.1, "labels": "soft"}, lambda: base(label=[0.8, 0.3]), [2.25, 0.25]),
    ],
    # (1−ε)ℓ(βΔ) + εℓ(−βΔ), ε = 0.1
    "cdpo": [({"epsilon": 0.1}, base, [0.9 * ell(0.15) + 0.1 * ell(-0.15), 0.9 * ell(-0.15) + 0.1 * ell(0.15)])],
    # [(1−ε)ℓ(βΔ) − εℓ(−βΔ)]/(1 − 2ε), ε = 0.2
    "rdpo": [
        (
            {"epsilon": 0.2},
            base,
            [(0.8 * ell(0.15) - 0.2 * ell(-0.15)) / 0.6, (0.8 * ell(-0.15) - 0.2 * ell(0.15)) / 0.6],
        )
    ],
    # ℓ(β(f′(e^{ρ_w}) − f′(e^{ρ_l}))): reverse KL = DPO; forward KL margin −e^{−ρ_w} + e^{−ρ_l};
    # JS margin log σ(ρ_w) − log σ(ρ_l); α = 0.5 margin (e^{−αρ_l} − e^{−αρ_w})/α
    "fdpo": [
        ({}, base, [ell(0.15), ell(-0.15)]),
        (
            {"divergence": "forward_kl"},
            base,
            [ell(0.1 * (-math.exp(-1) + math.exp(0.5))), ell(0.1 * (-math.exp(1) + math.exp(-0.5)))],
        ),
        (
            {"divergence": "js"},
            base,
            [
                ell(0.1 * (math.log(sig(1)) - math.log(sig(-0.5)))),
                ell(0.1 * (math.log(sig(-1)) - math.log(sig(0.5)))),
            ],
        ),
        (
            {"divergence": "alpha", "alpha": 0.5},
            base,
            [ell(0.1 * (math.exp(0.25) - math.exp(-0.5)) / 0.5), ell(0.1 * (math.exp(-0.25) - math.exp(0.5)) / 0.5)],
        ),
    ],
    # ℓ(β(mean_w − mean_l) − γ), β = 2, γ = 0.5: means (−1, −1.25) → ℓ(0) = log 2; (−2, −1.6) → ℓ(−1.3)
    "simpo": [({}, base, [math.log(2), ell(-1.3)])],
    # ℓ(βΔ) + ηβ(−log π(y_w)), β = 0.01, η = 0.005: ℓ(0.015) + 0.00015, ℓ(−0.015) + 0.0005;
    # sft=mean, η = 0.5: ℓ(0.015) + 0.5·1, ℓ(−0.015) + 0.5·2
    "rpo": [
        ({}, base, [ell(0.015) + 0.005 * 0.01 * 3, ell(-0.015) + 0.005 * 0.01 * 10]),
        ({"sft": "mean", "eta": 0.5}, base, [ell(0.015) + 0.5, ell(-0.015) + 1.0]),
    ],
    # max(0, 1 − βΔ): β = 0.1 → 0.85, 1.15; β = 1 → 0 (margin cleared), 2.5
    "hinge": [({"beta": 0.1}, base, [0.85, 1.15]), ({"beta": 1.0}, base, [0.0, 2.5])],
    # ½[(ρ_w − (p_w − ½)/β)² + (ρ_l − (p_l − ½)/β)²], β = 0.1, p_win = [0.7, 0.6], p_lose = [0.3, 0.45]:
    # targets (2, −2) → ½[(1 − 2)² + (−0.5 + 2)²] = 1.625; targets (1, −0.5) → ½[(−2)² + 1²] = 2.5
    "sppo": [
        ({"beta": 0.1}, lambda: base(p_win=[0.7, 0.6], p_lose=[0.3, 0.45]), [1.625, 2.5]),
        ({"beta": 0.1, "win_rates": "from_scores", "score_scale": 0.5}, _sppo_scores_stats, _sppo_scores()),
    ],
    # (ρ_w − 1/(2β))² + (ρ_l + 1/(2β))², β = 0.1: (1 − 5)² + (−0.5 + 5)² = 36.25; (−6)² + 5.5² = 66.25
    "sppo_hard": [({"beta": 0.1}, base, [36.25, 66.25])],
    # ℓ(β(Δ + D_w − D_l)): ℓ(0.1(1.5 + 0.2 − 0.3)) = ℓ(0.14); ℓ(0.1(−1.5 + 0.1 − 0.05)) = ℓ(−0.145)
    "tdpo1": [({}, with_token_kl, [ell(0.14), ell(-0.145)])],
    # ℓ(β(Δ + α(D_w − D_l))), α = 0.5: ℓ(0.1(1.5 − 0.05)) = ℓ(0.145); ℓ(0.1(−1.5 + 0.025)) = ℓ(−0.1475)
    "tdpo2": [({}, with_token_kl, [ell(0.145), ell(-0.1475)])],
    # ℓ(Σ β(1 + αβ r̂_w)ρ_w − Σ β(1 − αβ r̂_l)ρ_l), β = 1, α = 0.5:
    # (1.25·0.5 + 1.4·(−0.2)) − (1.25·(−0.2) + 1·0.2 + 0.75·(−0.5)) = 0.345 + 0.425 = 0.77
    "tgdpo": [({"beta": 1.0, "alpha": 0.5}, tgdpo_stats, [ell(0.77)])],
    # −log π(y_w)/|y_w|: 3/3 = 1, 10/5 = 2
    "sft": [({}, base, [1.0, 2.0])],
    # ℓ(β⁺ρ_w − β⁻ρ_l), β⁺ = 0.1, β⁻ = 0.08: ℓ(0.1 + 0.04) = ℓ(0.14), ℓ(−0.1 − 0.04) = ℓ(−0.14)
    "flex_dpo": [({}, base, [ell(0.14), ell(-0.14)])],
    # INPO, η = 2, τ = 0.25 (ητ = ½), log π_t(y_w) = [−3.5, −9.5], log π_t(y_l) = [−5.5, −8]:
    # h = log π − ½ log π_ref − ½ log π_t: h_w = [−3 + 2 + 1.75, −10 + 4.5 + 4.75] = [0.75, −0.75],
    # h_l = [−5 + 2.25 + 2.75, −8 + 4.25 + 4] = [0, 0.25]. Hard labels, target η/2 = 1: (−0.25)², (−2)².
    # Soft p = [0.75, 0.5], targets η(p − ½) = [0.5, 0]: (0.25)², (−1)².
    "inpo": [
        ({"eta": 2.0, "tau": 0.25}, lambda: base(**INPO_PREV), [0.0625, 4.0]),
        ({"eta": 2.0, "tau": 0.25, "labels": "soft"}, lambda: base(**INPO_PREV, label=[0.75, 0.5]), [0.0625, 1.0]),
    ],
    # (ρ − (P̂ − ½)/β)², β = 0.5, P̂ = [0.9, 0.25, 0.5]: targets [0.8, −0.5, 0] → 0.2², 0.5², 0.5²
    "sppo_sample": [({"beta": 0.5}, lambda: samples(win_rate=[0.9, 0.25, 0.5]), [0.04, 0.25, 0.25])],
    # e^ρ(β(ρ − δ − 1) − A), β = ½, A = [¼, −¼, 0]: δ = 0 → [e(0 − ¼), e⁻¹(−1 + ¼), e^{−½}(−¾)];
    # δ = [½, 0, −1] → [e(−¼ − ¼), e⁻¹(−1 + ¼), e^{−½}(−¼)]
    "pg": [
        ({"beta": 0.5}, lambda: samples(advantage=[0.25, -0.25, 0.0]),
         [-0.25 * math.e, -0.75 / math.e, -0.75 * math.exp(-0.5)]),
        ({"beta": 0.5, "anchor": "field"}, lambda: samples(advantage=[0.25, -0.25, 0.0], anchor_shift=[0.5, 0.0, -1.0]),
         [-0.5 * math.e, -0.75 / math.e, -0.25 * math.exp(-0.5)]),
    ],
}
# αβ·½(ρ_w + ρ_l), α = 0.5, β = 0.2: 0.1·½(1 − 0.5), 0.1·½(−1 + 0.5)
CASES["optimism"] = [({"alpha": 0.5, "beta": 0.2}, base, [0.1 * 0.5 * (1 - 0.5), 0.1 * 0.5 * (-1 + 0.5)])]
INPO_PREV = {"prev_chosen_logps": [-3.5, -9.5], "prev_rejected_logps": [-5.5, -8.0]}


def test_every_registered_loss_has_a_closed_form_case():
    assert sorted(registry()) == sorted(CASES), "add a hand-computed case for every registered loss"


@pytest.mark.parametrize(
    ("name", "params", "make", "expected"),
    [(n, p, m, e) for n, cases in CASES.items() for p, m, e in cases],
    ids=[f"{n}-{i}" for n, cases in CASES.items() for i in range(len(cases))],
)
def test_value_at_hand_computed_inputs(name, params, make, expected):
    out = get_loss(name, **params)(make())
    assert out.losses.dtype == torch.float64
    assert out.losses.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)
