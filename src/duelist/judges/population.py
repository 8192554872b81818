"""A population judge: several groups of raters, each with its own criteria and weights.

Group g scores a response by r_g(y) = Σ_k w_gk · c_k(y) / s_k (criteria c_k in units of their typical
spread s_k, see ``duelist.judges.criteria``) and prefers through Bradley–Terry,
P_g(a ≻ b) = σ((r_g(a) − r_g(b)) / τ_g) (τ_g = 0: the hard comparison). The population's preference is
the share-weighted aggregate P(a ≻ b) = Σ_g π_g P_g(a ≻ b), which is what a single reward model
trained on pooled labels sees; ``group_probs`` reports each group's own preference, which is what
MaxMin-RLHF (the worst-off group) and PAL (per-user ideal points) are about. The aggregate of
transitive groups can be intransitive (with hard groups of equal share it is a majority vote).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit

from duelist.judges.base import Judge
from duelist.judges.criteria import get_criterion


@dataclass(frozen=True)
class Group:
    name: str
    weights: Mapping[str, float]
    share: float = 1.0
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.share < 0 or self.temperature < 0:
            raise ValueError(f"group {self.name!r}: share and temperature must be ≥ 0")
        for c in self.weights:
            get_criterion(c)


DEFAULT_GROUPS: tuple[Group, ...] = (
    Group("enthusiasts", {"sentiment": 1.0, "detail": 0.3}, share=0.5),
    Group("skimmers", {"brevity": 1.0, "sentiment": 0.3}, share=0.3),
    Group("stylists", {"variety": 1.0, "detail": 0.5}, share=0.2),
)


@dataclass
class PopulationJudge(Judge):
    """Groups of raters with their own criteria weights and shares; the share-weighted aggregate P."""

    groups: Sequence[Group] = field(default_factory=lambda: DEFAULT_GROUPS)
    name: str = "population"

    def __post_init__(self) -> None:
        self.groups = [g if isinstance(g, Group) else Group(**g) for g in self.groups]
        total = sum(g.share for g in self.groups)
        if not self.groups or total <= 0:
            raise ValueError("a population needs at least one group with a positive share")
        self.shares = np.array([g.share / total for g in self.groups])
        self._criteria = sorted({c for g in self.groups for c in g.weights})

    @property
    def group_names(self) -> list[str]:
        return [g.name for g in self.groups]

    def group_rewards(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """[G, n] each group's reward r_g of each response."""
        feats = {c: get_criterion(c)(responses) / get_criterion(c).scale for c in self._criteria}
        return np.stack(
            [sum((w * feats[c] for c, w in g.weights.items()), np.zeros(len(responses))) for g in self.groups]
        )

    def group_probs(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """[G, n] P_g(a ≻ b) for every group."""
        d = self.group_rewards(prompts, a) - self.group_rewards(prompts, b)
        out = np.empty_like(d)
        for i, g in enumerate(self.groups):
            out[i] = 0.5 * (1 + np.sign(d[i])) if g.temperature == 0 else expit(d[i] / g.temperature)
        return out

    def prob(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        return self.shares @ self.group_probs(prompts, a, b)

    def report(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> dict[str, float]:
        """Mean P(a ≻ b) per group, the aggregate, and the worst-off group's (the MaxMin view)."""
        gp = self.group_probs(prompts, a, b).mean(axis=1)
        out = {g.name: float(p) for g, p in zip(self.groups, gp, strict=True)}
        out["aggregate"] = float(self.shares @ gp)
        out["min_group"] = float(gp.min())
        return out
