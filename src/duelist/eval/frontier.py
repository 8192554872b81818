"""The reward–KL frontier: oracle reward against KL(π ‖ π_ref) over checkpoints of a run or a list of runs.

Each point samples ``samples_per_prompt`` completions of the policy on held-out prompts, scores them
with the oracle (a ``RewardJudge``) and estimates KL(π ‖ π_ref) from the same samples
(``kl_from_samples``: log π − log π_ref of the policy's own samples, averaged per prompt; t-interval
over prompts). The reference itself is the point (0, its mean reward). A policy is a directory in
Hugging Face format (a run's ``final/``) or a checkpoint directory ``checkpoints/step-N`` of a run,
loaded as the run's base model plus the checkpoint's trainable weights. Where the prompts have an
on-task classifier (``duelist.eval.on_task``) a point also carries the share of its samples on task,
and where reference samples are given, the policy's win-rate over them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from duelist.eval.kl import kl_from_samples
from duelist.eval.on_task import OnTaskClassifier, on_task_share
from duelist.eval.stats import Estimate, mean_interval
from duelist.eval.winrate import win_rate
from duelist.judges.base import RewardJudge


@dataclass
class FrontierPoint:
    label: str
    reward: Estimate
    kl: Estimate
    on_task: Estimate | None = None
    win_rate: Estimate | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "reward": self.reward.as_dict(), "kl": self.kl.as_dict()}
        for name in ("on_task", "win_rate"):
            est = getattr(self, name)
            if est is not None:
                out[name] = est.as_dict()
        return out


def reward_kl_point(
    label: str,
    policy: torch.nn.Module,
    reference: torch.nn.Module,
    tokenizer: Any,
    prompt_ids: Sequence[list[int]],
    prompt_texts: Sequence[str],
    judge: RewardJudge,
    samples_per_prompt: int = 2,
    max_new_tokens: int = 32,
    batch_size: int = 32,
    seed: int = 0,
    on_task: OnTaskClassifier | None = None,
    reference_texts: Sequence[str] | None = None,
) -> FrontierPoint:
    """``reference_texts``: the reference's samples in prompt order (``samples_per_prompt`` each), for the
    win-rate; ``on_task``: the classifier for the on-task share."""
    from duelist.eval.run import score
    from duelist.sample.generate import sample

    k = samples_per_prompt
    comps = sample(policy, tokenizer, prompt_ids, k, max_new_tokens, 1.0, batch_size, seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    lp_pol = np.array([c.logprob for c in comps])
    lp_ref = lp_pol if policy is reference else score(reference, comps, pad, batch_size)
    return point_of_samples(label, prompt_texts, [c.text for c in comps], lp_pol, lp_ref, judge, k, on_task,
                            reference_texts)


def point_of_samples(
    label: str,
    prompt_texts: Sequence[str],
    texts: Sequence[str],
    lp_policy: np.ndarray,
    lp_reference: np.ndarray,
    judge: RewardJudge,
    samples_per_prompt: int,
    on_task: OnTaskClassifier | None = None,
    reference_texts: Sequence[str] | None = None,
) -> FrontierPoint:
    """A frontier point from a policy's samples (prompt order, ``samples_per_prompt`` each) and their
    log-probabilities under the policy and the reference."""
    k, n = samples_per_prompt, len(prompt_texts)
    groups = np.repeat(np.arange(n), k)
    r = judge.rewards([prompt_texts[g] for g in groups], list(texts))
    kl = kl_from_samples(lp_policy, lp_reference, groups)
    point = FrontierPoint(label, mean_interval(r.reshape(n, k).mean(1)), kl)
    if on_task is not None:
        point.on_task = on_task_share(on_task.on_task(texts), k)
    if reference_texts is not None:
        a = [list(texts[i * k : (i + 1) * k]) for i in range(n)]
        b = [list(reference_texts[i * k : (i + 1) * k]) for i in range(n)]
        point.win_rate = win_rate(judge, prompt_texts, a, b)[0]
    return point


def run_checkpoints(run_dir: str | Path) -> list[Path]:
    """A run's intermediate checkpoints: all ``step-N`` but the last (which holds the final weights)."""
    return [p for p in checkpoints_of(run_dir) if p.name != "final"][:-1]


def checkpoints_of(run_dir: str | Path) -> list[Path]:
    """A run's checkpoint directories in step order, then ``final/`` if present."""
    run = Path(run_dir)
    out = sorted((run / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    if (run / "final" / "config.json").is_file():
        out.append(run / "final")
    return out


def load_policy(path: str | Path, dtype: str = "float32") -> torch.nn.Module:
    """A policy from a Hugging Face directory or from ``<run>/checkpoints/step-N`` (the run's base model
    from ``<run>/config.yaml``, LoRA included, plus the saved trainable weights)."""
    from duelist.config import ModelConfig, load_config
    from duelist.models.load import load_model

    p = Path(path)
    if (p / "config.json").is_file():
        return load_model(ModelConfig(name=str(p), dtype=dtype))[0]
    if (p / "model.safetensors").is_file() and (p.parent.parent / "config.yaml").is_file():
        from safetensors.torch import load_file

        cfg = load_config(p.parent.parent / "config.yaml")
        model, _ = load_model(cfg.model.model_copy(update={"dtype": dtype, "gradient_checkpointing": False}))
        missing = set(load_file(p / "model.safetensors")) - set(dict(model.named_parameters()))
        if missing:
            raise ValueError(f"{p}: checkpoint tensors not in the model: {sorted(missing)[:3]}")
        model.load_state_dict(load_file(p / "model.safetensors"), strict=False)
        return model
    raise FileNotFoundError(f"{p} is neither a model directory nor a run checkpoint")


def frontier(
    policies: Sequence[str | Path],
    reference: str = "default",
    prompts: str = "positive-review:test",
    judge: str = "lexicon",
    num_prompts: int = 32,
    samples_per_prompt: int = 2,
    max_new_tokens: int = 32,
    batch_size: int = 32,
    seed: int = 0,
    labels: Sequence[str] | None = None,
) -> list[FrontierPoint]:
    """Reward–KL points of the reference and of each policy, on the same prompts and seed."""
    from duelist.config import ModelConfig
    from duelist.data.tokenize import PairTokenizer
    from duelist.eval.run import _text, load_prompts
    from duelist.judges import get_judge
    from duelist.models.load import load_model

    j = get_judge(judge)
    if not isinstance(j, RewardJudge):
        raise ValueError(f"judge {judge!r} has no scalar reward; the frontier needs a reward judge")
    ref, tok = load_model(ModelConfig(name=reference, dtype="float32"))
    ps = load_prompts(prompts, num_prompts)
    ids = [PairTokenizer(tok).encode_prompt(p) for p in ps]
    texts = [_text(p) for p in ps]
    kw = dict(samples_per_prompt=samples_per_prompt, max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed)
    points = [reward_kl_point("reference", ref, ref, tok, ids, texts, j, **kw)]
    names = list(labels) if labels is not None else [_label(p) for p in policies]
    for name, path in zip(names, policies, strict=True):
        points.append(reward_kl_point(name, load_policy(path), ref, tok, ids, texts, j, **kw))
    return points


def _label(path: str | Path) -> str:
    p = Path(path)
    return f"{p.parent.parent.name}/{p.name}" if p.parent.name == "checkpoints" else f"{p.parent.name}/{p.name}"


def plot_frontier(points: Sequence[FrontierPoint], path: str | Path, title: str = "reward–KL frontier") -> None:
    """Mean oracle reward (95% interval) against KL (± 1 standard error); points joined in order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    x = np.array([p.kl.mean for p in points])
    y = np.array([p.reward.mean for p in points])
    ax.errorbar(
        x,
        y,
        xerr=[p.kl.se for p in points],
        yerr=[[p.reward.mean - p.reward.lo for p in points], [p.reward.hi - p.reward.mean for p in points]],
        fmt="o-",
        capsize=3,
    )
    for p in points:
        ax.annotate(p.label, (p.kl.mean, p.reward.mean), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("KL(π ‖ π_ref), nats (± s.e.)")
    ax.set_ylabel("mean oracle reward (95% interval)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_frontier(points: Sequence[FrontierPoint], out_dir: str | Path) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "frontier.json").write_text(json.dumps([p.as_dict() for p in points], indent=1))
    plot_frontier(points, out / "frontier.png")
