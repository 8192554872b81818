"""Commands for judges, measurements and inference-time alignment:

* ``duelist judges``: the registered judges and criteria;
* ``duelist measure winrate|accuracy|frontier|diagnose``: win-rate of A over B under any judge,
  implicit-reward accuracy on held-out pairs, the reward–KL frontier (PNG), and training diagnostics
  (log-prob trajectories, linear probe);
* ``duelist bon``: best-of-N sampling under a judge, with the analytic KL bound;
* ``duelist rerank``: equilibrium ranking on cached LM scores (finegrained-qa).
Each writes JSON (and a PNG where there is a plot) to ``--out`` and prints a summary.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("judges", help="list the preference judges and their criteria")
    p.add_argument("--json", action="store_true", help="print judges and criteria as JSON")
    p.set_defaults(run=run_judges)

    m = sub.add_parser("measure", help="win-rate, implicit-reward accuracy, reward–KL frontier, diagnostics")
    msub = m.add_subparsers(dest="what", required=True)
    w = msub.add_parser("winrate", help="win-rate of policy A over policy B under a judge (95%% interval)")
    w.add_argument("policy_a")
    w.add_argument("policy_b", nargs="?", default="default")
    _sampling_args(w)
    w.add_argument("--judge", default="lexicon")
    a = msub.add_parser(
        "accuracy",
        help="accuracy on held-out pairs (or cyclic triples) of a reward model, or a DPO policy's implicit reward",
        description="POLICY is a policy folder (implicit-reward accuracy against --reference) or a reward-model "
        "folder (duelist.json of a reward model): its accuracy with a 95%% interval on pairs (per subset and per "
        "user where the data has them), or on triples of samples (--data intransitive-review:samples): the share "
        "of the oracle's cyclic triples it gets right in all three directions.",
    )
    a.add_argument("policy", help="trained model directory (a run's final/): a policy or a reward model")
    a.add_argument("--data", default="hh-harmless:test")
    a.add_argument("--dpo", help="reward model: also the implicit-reward accuracy of this DPO policy on the same pairs")
    a.add_argument("--judge", help="reward model on triples: the oracle (default: the task's)")
    a.add_argument("--fit", help="per-user reward model: pairs that fit the users it has not seen (plural-review:fit)")
    a.add_argument("--reference", default="default")
    a.add_argument("--beta", type=float, default=0.1)
    a.add_argument("--max-length", type=int, default=512)
    a.add_argument("--max-prompt-length", type=int, default=256)
    a.add_argument("--truncation", choices=["keep_end", "drop"], default="keep_end")
    a.add_argument("--limit", type=int)
    a.add_argument("--batch-size", type=int, default=8)
    a.add_argument("--cache", type=Path, help=".npz file for the reference's log-probs (read if present)")
    f = msub.add_parser("frontier", help="oracle reward vs KL over checkpoints of runs or a list of models")
    f.add_argument("policies", nargs="+", help="model directories, checkpoint directories or run directories")
    _sampling_args(f)
    f.add_argument("--judge", default="lexicon")
    f.add_argument("--reference", default="default")
    d = msub.add_parser("diagnose", help="log-prob trajectories of a run, optionally a linear probe")
    d.add_argument("run_dir", type=Path, metavar="RUN", help="run directory (metrics.jsonl; final/ for the probe)")
    d.add_argument("--probe-data", help="pairs for the linear probe, e.g. hh-harmless:test")
    d.add_argument("--probe-limit", type=int, default=200)
    for q in (w, a, f, d):
        q.add_argument("--out", type=Path, default=Path("."), help="output folder")
        q.add_argument("--threads", type=int, help="torch CPU threads (1 avoids oversubscription on a shared CPU)")
    m.set_defaults(run=run_measure)

    b = sub.add_parser("bon", help="best-of-N sampling under a judge, with the KL bound log N − (N−1)/N")
    b.add_argument("--n", type=int, default=4)
    b.add_argument("--model", default="default")
    b.add_argument("--judge", default="lexicon")
    _sampling_args(b)
    b.add_argument("--out", type=Path, default=Path("."))
    b.set_defaults(run=run_bon)

    r = sub.add_parser("rerank", help="equilibrium ranking (consensus game) on cached LM scores")
    r.add_argument("--scores", type=Path, help="lm_scores.jsonl (default: the finegrained-qa task's)")
    r.add_argument("--lam", type=float, default=0.1, help="λ_G = λ_D")
    r.add_argument("--eta", type=float, default=0.1, help="η_G = η_D")
    r.add_argument("--iterations", type=int, default=5000)
    r.add_argument("--length-normalize", action="store_true", help="generator score = mean token log-prob")
    r.add_argument("--out", type=Path, default=Path("."))
    r.set_defaults(run=run_rerank)


def _sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompts", default="positive-review:test")
    p.add_argument("--num-prompts", type=int, default=32)
    p.add_argument("--samples", type=int, default=2, help="samples per prompt")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)


def _write(out: Path, name: str, obj: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(obj, indent=1, default=float))
    print(json.dumps(obj, indent=1, default=float))


def run_judges(args: argparse.Namespace) -> int:
    from duelist.judges import JUDGES
    from duelist.judges.criteria import CRITERIA
    from duelist.tables import Column, print_json, print_table

    judges = [(name, next(iter((JUDGES[name].__doc__ or "").strip().splitlines()), "")) for name in sorted(JUDGES)]
    criteria = [(c.name, c.scale, c.description) for c in CRITERIA.values()]
    if args.json:
        print_json({
            "judges": [{"name": n, "description": d} for n, d in judges],
            "criteria": [{"name": n, "scale": s, "description": d} for n, s, d in criteria],
        })
        return 0
    print_table("judges (duelist.judges.get_judge)", ["name", Column("description", wrap=True)], judges)
    print_table(
        "criteria (intransitive and population judges)",
        ["name", Column("scale", justify="right"), Column("description", wrap=True)],
        [(n, f"{s:g}", d) for n, s, d in criteria],
    )
    return 0


def run_measure(args: argparse.Namespace) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.what == "winrate":
        from duelist.eval.winrate import compare_policies

        res = compare_policies(
            args.policy_a,
            args.policy_b,
            args.judge,
            args.prompts,
            args.num_prompts,
            args.samples,
            args.max_new_tokens,
            args.batch_size,
            args.seed,
        )
        _write(args.out, "winrate.json", res)
    elif args.what == "accuracy":
        from duelist.eval.accuracy import evaluate_accuracy
        from duelist.eval.rm_accuracy import evaluate_reward_model, is_reward_model

        if is_reward_model(args.policy):
            res = evaluate_reward_model(args.policy, args.data, args.limit, args.batch_size, args.judge, args.fit)
            if args.dpo:
                res["dpo_implicit_reward"] = evaluate_accuracy(
                    args.dpo, args.data, args.reference, args.beta, args.max_length, args.max_prompt_length,
                    args.truncation, args.batch_size, args.limit, args.cache,
                )
            _write(args.out, "accuracy.json", res)
            return 0
        res = evaluate_accuracy(
            args.policy,
            args.data,
            args.reference,
            args.beta,
            args.max_length,
            args.max_prompt_length,
            args.truncation,
            args.batch_size,
            args.limit,
            args.cache,
        )
        _write(args.out, "accuracy.json", res)
    elif args.what == "frontier":
        from duelist.eval.frontier import checkpoints_of, frontier, save_frontier

        paths: list[Path] = []
        for p in map(Path, args.policies):
            paths.extend(checkpoints_of(p) if (p / "metrics.jsonl").is_file() else [p])
        pts = frontier(
            paths,
            args.reference,
            args.prompts,
            args.judge,
            args.num_prompts,
            args.samples,
            args.max_new_tokens,
            args.batch_size,
            args.seed,
        )
        save_frontier(pts, args.out)
        print(json.dumps([p.as_dict() for p in pts], indent=1))
    elif args.what == "diagnose":
        from duelist.eval.diagnostics import plot_trajectories, trajectories, trajectory_summary

        tr = trajectories(args.run_dir / "metrics.jsonl")
        res: dict[str, Any] = {"run": str(args.run_dir), "trajectory": trajectory_summary(tr)}
        args.out.mkdir(parents=True, exist_ok=True)
        plot_trajectories(tr, args.out / "trajectories.png")
        if args.probe_data:
            res["probe"] = _probe(args.run_dir / "final", args.probe_data, args.probe_limit)
        _write(args.out, "diagnostics.json", res)
    return 0


def _probe(model_dir: Path, data: str, limit: int) -> dict[str, Any]:
    from duelist.config import ModelConfig
    from duelist.data.formats import validate
    from duelist.data.sources import read_records
    from duelist.eval.accuracy import tokenize_examples
    from duelist.eval.diagnostics import linear_probe, response_features
    from duelist.models.load import load_model

    model, tok = load_model(ModelConfig(name=str(model_dir), dtype="float32"))
    ex = validate(read_records(data, "test")[:limit], on_invalid="skip").examples
    pairs, _, _ = tokenize_examples(tok, ex)
    prompts = [p.prompt for p in pairs]
    fc = response_features(model, prompts, [p.chosen for p in pairs])
    fr = response_features(model, prompts, [p.rejected for p in pairs])
    return linear_probe(fc, fr).as_dict()


def run_bon(args: argparse.Namespace) -> int:
    import numpy as np

    from duelist.config import ModelConfig
    from duelist.eval.run import _text, load_prompts
    from duelist.eval.winrate import win_rate
    from duelist.judges import get_judge
    from duelist.models.load import load_model
    from duelist.sample.best_of_n import best_of_n

    judge = get_judge(args.judge)
    model, tok = load_model(ModelConfig(name=args.model, dtype="float32"))
    ps = load_prompts(args.prompts, args.num_prompts)
    texts = [_text(p) for p in ps]
    res = best_of_n(model, tok, ps, judge, args.n, args.max_new_tokens, 1.0, args.batch_size, args.seed, texts)
    # BoN's pick against an independent plain sample of the same prompt (the candidates' first one is
    # not independent of the pick, so draw fresh reference samples with another seed)
    plain = best_of_n(model, tok, ps, judge, 1, args.max_new_tokens, 1.0, args.batch_size, args.seed + 1, texts)
    est, _ = win_rate(judge, texts, [[c.text] for c in res.chosen], [[c.text] for c in plain.chosen])
    out = {
        "model": args.model,
        "judge": args.judge,
        "n": args.n,
        "num_prompts": len(ps),
        "kl_bound": res.kl_bound,
        "kl_plugin": res.kl_plugin,
        "win_rate_vs_plain": est.as_dict(),
        "win_rate_bound": args.n / (args.n + 1),
        "mean_best_score": float(np.mean([s.max() for s in res.scores])),
        "examples": [{"prompt": t, "best": c.text} for t, c in list(zip(texts, res.chosen, strict=True))[:4]],
    }
    _write(args.out, "bon.json", out)
    return 0


def run_rerank(args: argparse.Namespace) -> int:
    from duelist.data import tasks
    from duelist.sample.equilibrium_ranking import load_lm_scores, rerank_experiment

    path = args.scores or tasks.HERE / tasks.get("finegrained-qa").folder / "lm_scores.jsonl"
    res = rerank_experiment(
        load_lm_scores(path),
        length_normalize=args.length_normalize,
        lam_g=args.lam,
        lam_d=args.lam,
        eta_g=args.eta,
        eta_d=args.eta,
        iterations=args.iterations,
    )
    _write(args.out, "rerank.json", res)
    return 0
