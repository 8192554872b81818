"""``duelist eval``: sample from the trained policy and its reference on held-out prompts and compare.

Reports the oracle win-rate of policy over reference (each prompt's K policy samples against its K
reference samples, ties ½) with a 95% interval over prompts, the mean oracle reward of both, and
KL(π ‖ π_ref) estimated from the policy's own samples. Writes ``eval.json`` and ``eval.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from duelist.config import Config, ModelConfig
from duelist.data import tasks
from duelist.data.formats import record_prompt
from duelist.data.sources import read_records
from duelist.data.tokenize import PairTokenizer
from duelist.eval.frontier import FrontierPoint, load_policy, point_of_samples, reward_kl_point, run_checkpoints
from duelist.eval.kl import kl_from_samples
from duelist.eval.on_task import OnTaskClassifier, on_task_share
from duelist.eval.plots import eval_report
from duelist.eval.report import print_pairs, sample_rows, write_samples
from duelist.eval.stats import mean_interval
from duelist.eval.winrate import win_rate
from duelist.judges import RewardJudge, get_judge
from duelist.models.load import load_model
from duelist.models.logprobs import sequence_logprobs
from duelist.sample.generate import Completion, sample

console = Console(stderr=True)


def prompt_source(cfg: Config) -> str:
    if cfg.eval.prompts:
        return cfg.eval.prompts
    if tasks.is_task(cfg.data.train):
        return f"{tasks.split_spec(cfg.data.train)[0]}:test"
    raise ValueError("eval.prompts is required when training data is not a built-in task")


def judge_name(cfg: Config) -> str:
    if cfg.eval.judge:
        return cfg.eval.judge
    src = prompt_source(cfg)
    if tasks.is_task(src) and tasks.get(src).judge:
        return tasks.get(src).judge  # type: ignore[return-value]
    raise ValueError("eval.judge is required when the prompts do not come from a task with an oracle")


def load_prompts(spec: str, n: int) -> list[Any]:
    records = read_records(spec, "test")
    prompts = []
    for r in records[:n]:
        prompt = record_prompt(r)
        if prompt is None:
            raise ValueError(f"{r.where}, field 'prompt': missing (evaluation needs prompts)")
        prompts.append(prompt)
    return prompts


def score(model: torch.nn.Module, comps: list[Completion], pad_id: int, batch_size: int) -> np.ndarray:
    """log π(y|x) of each completion under ``model``."""
    return sequence_logprobs(model, [c.prompt_ids for c in comps], [c.ids for c in comps], pad_id, batch_size).numpy()


def _text(prompt: Any) -> str:
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


def evaluate(
    cfg: Config, policy: str | Path, out_dir: Path, metrics_file: Path | None = None, run_dir: Path | None = None
) -> dict[str, Any]:
    """``run_dir``: the policy's training run, whose intermediate checkpoints make the frontier (``eval.frontier``)."""
    e = cfg.eval
    t0 = time.perf_counter()
    spec, jname = prompt_source(cfg), judge_name(cfg)
    prompts = load_prompts(spec, e.num_prompts)
    judge = get_judge(jname)
    clf_file = tasks.on_task_file(spec)
    clf = OnTaskClassifier.load(clf_file) if clf_file else None
    base = cfg.model.model_copy(update={"lora": None, "gradient_checkpointing": False})
    ref_model, tok = load_model(base)
    pol_model, _ = load_model(ModelConfig(name=str(policy), dtype=cfg.model.dtype))
    enc = PairTokenizer(tok)
    ids = [enc.encode_prompt(p) for p in prompts]
    k = e.samples_per_prompt
    kw = dict(max_new_tokens=e.max_new_tokens, temperature=e.temperature, batch_size=e.batch_size, seed=e.seed)
    pol = sample(pol_model, tok, ids, k, progress=True, description="sampling policy", **kw)
    ref = sample(ref_model, tok, ids, k, progress=True, description="sampling reference", **kw)
    del pol_model
    texts = [_text(p) for p in prompts]
    pol_t, ref_t = [c.text for c in pol], [c.text for c in ref]
    win, _ = win_rate(judge, texts, [pol_t[i * k : (i + 1) * k] for i in range(len(texts))],
                      [ref_t[i * k : (i + 1) * k] for i in range(len(texts))])
    groups = np.array([c.prompt_index for c in pol])
    lp_pol = np.array([c.logprob for c in pol])  # recorded while sampling
    lp_ref = score(ref_model, pol, tok.pad_token_id, e.batch_size)
    kl = kl_from_samples(lp_pol, lp_ref, groups)
    result: dict[str, Any] = {
        "policy": str(policy),
        "reference": base.name,
        "prompts": spec,
        "judge": jname,
        "num_prompts": len(prompts),
        "samples_per_prompt": k,
        "win_rate": win.as_dict(),
        "kl": kl.as_dict(),
        "seconds": None,
        "examples": [
            {"prompt": texts[c.prompt_index], "policy": c.text, "reference": r.text}
            for c, r in list(zip(pol, ref, strict=True))[: 4 * k : k]
        ],
    }
    columns: dict[str, Any] = {"log_ratio_policy": lp_pol - lp_ref}
    if clf is not None:
        columns |= {"on_task_policy": clf.on_task(pol_t), "on_task_reference": clf.on_task(ref_t)}
        result["on_task_policy"] = on_task_share(columns["on_task_policy"], k).as_dict()
        result["on_task_reference"] = on_task_share(columns["on_task_reference"], k).as_dict()
    r_pol = r_ref = None
    if isinstance(judge, RewardJudge):
        r_pol = judge.rewards([texts[c.prompt_index] for c in pol], pol_t)
        r_ref = judge.rewards([texts[c.prompt_index] for c in ref], ref_t)
        columns |= {"reward_policy": r_pol, "reward_reference": r_ref}
        result["reward_policy"] = mean_interval(r_pol.reshape(len(prompts), k).mean(1)).as_dict()
        result["reward_reference"] = mean_interval(r_ref.reshape(len(prompts), k).mean(1)).as_dict()
        zero = np.zeros(len(ref_t))
        points = [point_of_samples("reference", texts, ref_t, zero, zero, judge, k, clf)]
        if e.frontier and run_dir is not None:
            points += _checkpoint_points(cfg, run_dir, ref_model, tok, ids, texts, judge, clf, ref_t)
        points.append(point_of_samples("final", texts, pol_t, lp_pol, lp_ref, judge, k, clf, ref_t))
        result["frontier"] = [p.as_dict() for p in points]
    result["seconds"] = round(time.perf_counter() - t0, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(result, indent=1))
    rows = sample_rows(texts, pol_t, ref_t, k, columns)
    write_samples(out_dir / "samples.jsonl", rows)
    if r_pol is not None and r_ref is not None:
        eval_report(out_dir / "eval.png", result, r_pol, r_ref, metrics_file)
    print_pairs(rows, e.show_pairs, e.seed)
    print_result(result)
    return result


def _checkpoint_points(
    cfg: Config,
    run_dir: Path,
    ref_model: torch.nn.Module,
    tok: Any,
    ids: list[list[int]],
    texts: list[str],
    judge: RewardJudge,
    clf: OnTaskClassifier | None,
    ref_texts: list[str],
) -> list[FrontierPoint]:
    """Frontier points of the run's intermediate checkpoints, sampled like the final policy."""
    e = cfg.eval
    points = []
    for path in run_checkpoints(run_dir):
        console.print(f"frontier: {path.name}")
        model = load_policy(path, cfg.model.dtype)
        points.append(
            reward_kl_point(
                f"step {int(path.name.split('-')[1])}",
                model, ref_model, tok, ids, texts, judge, e.samples_per_prompt, e.max_new_tokens, e.batch_size,
                e.seed, clf, ref_texts,
            )
        )
        del model
    return points


def print_result(result: dict[str, Any]) -> None:
    t = Table(
        title=f"policy vs reference — {result['num_prompts']} held-out prompts × "
        f"{result['samples_per_prompt']} samples, judge: {result['judge']}"
    )
    t.add_column("metric")
    t.add_column("value")
    t.add_column("95% interval")
    w, k = result["win_rate"], result["kl"]
    t.add_row("win-rate (policy ≻ reference)", f"{w['mean']:.3f}", f"[{w['lo']:.3f}, {w['hi']:.3f}]")
    for name in ("reward_policy", "reward_reference"):
        if name in result:
            r = result[name]
            t.add_row(
                f"mean oracle reward, {name.split('_')[1]}", f"{r['mean']:.3f}", f"[{r['lo']:.3f}, {r['hi']:.3f}]"
            )
    t.add_row("KL(π ‖ π_ref), nats", f"{k['mean']:.3f} ± {k['se']:.3f}", f"[{k['lo']:.3f}, {k['hi']:.3f}]")
    for name in ("on_task_policy", "on_task_reference"):
        if name in result:
            r = result[name]
            t.add_row(f"on task, {name.split('_')[2]}", f"{r['mean']:.3f}", f"[{r['lo']:.3f}, {r['hi']:.3f}]")
    Console().print(t)
