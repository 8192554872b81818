"""Accuracy of a trained reward or preference model (a folder of ``duelist.rewards.model``) on held-out data.

* **Pairs** (any preference format): the model agrees with the label when P(y_w ≻ y_l | x) > ½ (exactly ½ counts
  ½), with a 95% interval over pairs (``winrate_interval``: Wilson for 0/1 outcomes), per subset when records
  carry a ``subset`` field, per group (with the worst group's accuracy) when they carry a ``group`` field (e.g.
  plural-review's users' primary groups), and per user for per-user kinds (records with ``user``). Users the model
  has not seen are fitted first on ``fit`` pairs (``RewardModel.fit_users``: PAL their mixture weights alone,
  MaxMin their group by the E-step).
* **Triples** (records with ``prompt`` and three or more ``samples``, e.g. ``intransitive-review:samples``): an
  oracle judge (the task's, or ``judge``) labels the three pairs of the first three samples; triples it ranks in
  a cycle (a ≻ b ≻ c ≻ a) are the **cyclic triples**, and the model gets one right when all three of its
  preferences follow the cycle. A model with a scalar reward (BT) is transitive, so it gets none right unless it
  ties; GPM can represent the cycle. Every non-tie judged pair of the triples also counts toward a pairwise
  accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from duelist.data.formats import PreferenceExample
from duelist.eval.accuracy import accuracy_from_margins
from duelist.eval.stats import winrate_interval
from duelist.rewards import USER_FIELD
from duelist.rewards.model import CARD, FORMAT, RewardModel, load_reward_model

CYCLE = ((0, 1), (1, 2), (2, 0))


def is_reward_model(path: str | Path) -> bool:
    """Whether ``path`` is a reward-model folder (its ``duelist.json`` has the reward-model format)."""
    import json

    card = Path(path) / CARD
    if not card.is_file():
        return False
    try:
        return json.loads(card.read_text()).get("format") == FORMAT
    except ValueError:
        return False


def pair_accuracy(
    rm: RewardModel, examples: Sequence[PreferenceExample], users: Sequence[int | str] | None = None
) -> dict[str, Any]:
    """Accuracy of ``rm`` on labelled pairs (P(chosen ≻ rejected) > ½), with interval and mean P(chosen)."""
    p = rm.prob([e.prompt for e in examples], [e.chosen for e in examples], [e.rejected for e in examples], users)
    return {"accuracy": accuracy_from_margins(p - 0.5).as_dict(), "mean_prob_chosen": float(p.mean()), "pairs": len(p)}


def _grouped(rm: RewardModel, examples: Sequence[PreferenceExample], keys: Sequence[Any], users: Any) -> dict:
    out = {}
    for key in sorted(set(keys), key=str):
        idx = [i for i, k in enumerate(keys) if k == key]
        sub_users = None if users is None else [users[i] for i in idx]
        out[str(key)] = pair_accuracy(rm, [examples[i] for i in idx], sub_users)
    return out


def triple_accuracy(rm: RewardModel, records: Sequence[dict[str, Any]], judge: Any) -> dict[str, Any]:
    """Cyclic-triple and pairwise accuracy on triples of samples labelled by ``judge`` (module docstring)."""
    from duelist.eval.run import _text

    prompts = [r["prompt"] for r in records]
    triples = [list(r["samples"][:3]) for r in records]
    if any(len(t) < 3 for t in triples):
        raise ValueError("every triple record needs at least three samples")
    texts = [_text(p) for p in prompts]
    judged = np.stack(
        [judge.prob(texts, [t[i] for t in triples], [t[j] for t in triples]) for i, j in CYCLE], axis=1
    )  # [T, 3]: P(s_i ≻ s_j) for (0,1), (1,2), (2,0)
    mats = rm.matrices(prompts, triples)
    model = np.stack([[m[i, j] for i, j in CYCLE] for m in mats])
    forward = np.all(judged > 0.5, axis=1)
    backward = np.all(judged < 0.5, axis=1)
    cyclic = forward | backward
    sign = np.where(forward, 1.0, -1.0)[:, None]
    agree = np.sign(model - 0.5) * sign  # +1 where the model follows the cycle's direction
    all_three = (agree[cyclic] > 0).all(axis=1).astype(float)
    decided = judged != 0.5
    pair_right = np.where(np.sign(model - 0.5) == np.sign(judged - 0.5), 1.0, np.where(model == 0.5, 0.5, 0.0))
    out: dict[str, Any] = {
        "triples": len(records),
        "cyclic_triples": int(cyclic.sum()),
        "pairwise_accuracy": winrate_interval(pair_right[decided]).as_dict(),
        "judge": getattr(judge, "name", str(judge)),
    }
    if cyclic.any():
        out["cyclic_accuracy"] = winrate_interval(all_three).as_dict()
        out["cyclic_directions_right"] = float((agree[cyclic] > 0).mean())
    return out


def evaluate_reward_model(
    folder: str | Path,
    data: str = "hh-harmless:test",
    limit: int | None = None,
    batch_size: int = 16,
    judge: str | None = None,
    fit: str | None = None,
) -> dict[str, Any]:
    """Load the model at ``folder`` and measure it on ``data`` (pairs, or triples of samples); JSON-able.
    ``judge``: the triples' oracle (default: the task's); ``fit``: pairs that fit unseen users (per-user kinds)."""
    from duelist.data import tasks
    from duelist.data.formats import validate
    from duelist.data.sources import read_records
    from duelist.judges import get_judge

    rm = load_reward_model(folder, batch_size=batch_size)
    records = read_records(data, "test")[:limit]
    res: dict[str, Any] = {"model": str(folder), "kind": rm.card.kind, "data": data}
    if "samples" in records[0].data:
        name = judge or (tasks.get(data).judge if tasks.is_task(data) else None)
        if name is None:
            raise ValueError(f"{data}: triples need an oracle judge to label them; pass --judge")
        return {**res, **triple_accuracy(rm, [r.data for r in records], get_judge(name))}
    fields = {USER_FIELD: (0, None)} if rm.kind.reads_user else None
    examples = validate(records, on_invalid="error", fields=fields).examples
    users = [int(e.extra[USER_FIELD]) for e in examples] if rm.kind.reads_user else None
    if users is not None and fit is not None:
        fx = validate(read_records(fit, "fit"), on_invalid="error", fields=fields).examples
        fit_users = [int(e.extra[USER_FIELD]) for e in fx]
        res["fitted_users"] = rm.fit_users([e.prompt for e in fx], [e.chosen for e in fx], [e.rejected for e in fx],
                                           fit_users)
    res |= pair_accuracy(rm, examples, users)
    for key, name in (("subset", "per_subset"), ("group", "per_group")):
        values = [r.data.get(key) for r in records]
        if any(v is not None for v in values):
            res[name] = _grouped(rm, examples, values, users)
            worst = min(res[name].items(), key=lambda kv: kv[1]["accuracy"]["mean"])
            res[f"worst_{key}"] = {key: worst[0], **worst[1]}
    if users is not None:
        res["per_user"] = {k: v["accuracy"]["mean"] for k, v in _grouped(rm, examples, users, users).items()}
    return res
