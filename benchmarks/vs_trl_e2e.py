"""``vs_trl.py --end-to-end``: whole runs, as a user times them (a benchmark, not a test).

Each system trains the same model on the same pairs in the same order (batch, DPO β = 0.1, AdamW, precision as
in ``vs_trl.py``) in its own process, timed from the process's start to its final weights on disk: imports,
model load, data preparation, reference log-probs, compilation, checkpoints and the final save all count. Peak
RSS (GPU: max allocated) of the whole process. Every process starts cold: its own duelist reference cache, its
own inductor cache and datasets cache (the model's weights are read from the same warm cache by both).

Systems:

* ``trl:defaults``: TRL's DPOTrainer as it ships (gradient checkpointing, the reference model scored every step,
  its own checkpoint schedule), only the matched settings set;
* ``trl:<best>``: TRL at its fastest settings on this machine, one of ``TRL_CANDIDATES``: the one named by
  ``--trl-best``, or with ``--trl-best probe`` the one a short probe of every candidate predicts fastest for the
  full run (each candidate's fixed costs, its precompute scaled to the run, its step time after the first);
* ``duelist``: ``duelist train`` at its default settings: no performance override at all.

The FLOP floor of each system (``floor``) at the fp32 (GPU: bf16) matmul rate measured in the same run: 6 per
decoder parameter per token the system's policy forward sees, 2 per token of each reference forward, 2 more per
token where gradient checkpointing recomputes the forward; the output projection (lm_head) 6 + 2 per parameter
on response tokens only (the only ones whose log-probs are needed), 2 more where the head is recomputed in the
backward pass. TRL's rows repeat the prompt (chosen and rejected are separate rows), duelist's shared layout
computes it once per pair. Attention's own FLOPs are not counted, so the floor is a lower bound.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hardware import matmul_gflops

E2E_STEPS = 30  # the main job's size: 30 steps × 8 pairs
LOSS_TOL = 1e-4

# TRL DPOConfig fields per candidate setting, on top of the matched ones (``vs_trl.run_trl``). Its docs offer
# no other speed setting for this run: padding_free falls back to padding in TRL 1.16 (and needs flash
# attention), bf16 would change the precision, use_liger_kernel needs a package TRL does not ship with.
TRL_CANDIDATES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "precompute": {"precompute_ref_log_probs": True},
    "no-checkpointing": {"gradient_checkpointing": False},
    "precompute+no-checkpointing": {"precompute_ref_log_probs": True, "gradient_checkpointing": False},
    "precompute+no-checkpointing+compile": {"precompute_ref_log_probs": True, "gradient_checkpointing": False,
                                            "torch_compile": True},
}
# without a probe: the candidate that removes both of TRL's extra forwards per step (the reference model's and
# checkpointing's recompute) from the timed steps
DEFAULT_BEST = "precompute+no-checkpointing"


# --------------------------------------------------------------------------------------------- workers


def process_seconds() -> float:
    """Seconds since this process started (its creation time, as the kernel records it)."""
    import psutil

    return time.time() - psutil.Process().create_time()


def run_duelist_defaults(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """``duelist train`` at its defaults: only what both systems must share (model, data and its order, batch,
    loss, optimizer, precision, run length) and the output folder are set."""
    import torch
    from vs_trl import BETA, LR, SEED, make_pairs, model_dir, param_split, peak_memory_gib, token_counts

    from duelist.config import load_config
    from duelist.data.tokenize import TokenizedPair
    from duelist.models.load import load_tokenizer
    from duelist.train.run import Run

    cfg = load_config(None, [
        f"model.name={model_dir(args, tmp.parent)}", f"train.output_dir={tmp / 'duelist'}", f"train.steps={args.steps}",
        f"train.batch_size={args.batch}", f"loss.beta={BETA}", f"optim.lr={LR}", "optim.warmup=0",
        "optim.schedule=constant", "optim.max_grad_norm=1.0", "optim.weight_decay=0", "data.shuffle=false",
        f"train.seed={SEED}", f"model.dtype={'bfloat16' if args.device == 'cuda' else 'float32'}",
        *(["train.mixed_precision=bf16"] if args.mixed_bf16 else []),
    ])
    pairs = [TokenizedPair(p["prompt_ids"], p["chosen_ids"], p["rejected_ids"])
             for p in make_pairs(args, load_tokenizer(cfg.model), args.batch * args.steps)]
    run = Run(cfg, pairs=pairs)
    result = run.fit()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall = process_seconds()
    model = run.learner.model
    return {"wall_s": wall, "peak_gib": peak_memory_gib(), "losses": [m["loss"] for m in result.history],
            "times": [m["step_time"] for m in result.history], "settings": resolved_settings(run),
            "layout": "shared" if run.learner.layout.startswith("shared") else "rows", **param_split(model),
            **token_counts([{"prompt_ids": p.prompt, "chosen_ids": p.chosen, "rejected_ids": p.rejected}
                            for p in pairs]),
            "checkpointing": bool(cfg.model.gradient_checkpointing),
            "head_recompute": head_recompute(run, [len(p.chosen) + len(p.rejected) for p in pairs])}


def head_recompute(run: Any, response_tokens: list[int]) -> bool:
    """Whether the head recomputed its logits in the backward pass of any micro-batch (its ``keep_probs``
    default keeps the softmax of a micro-batch up to ``KEEP_PROBS_BYTES``)."""
    from duelist.models.logprobs import KEEP_PROBS_BYTES

    keep = run.learner.module.keep_probs
    if keep is not None:
        return not keep
    plan, head = run.source.plan, run.learner.model.get_output_embeddings().weight
    largest = max(sum(response_tokens[i] for i in mb) for s in range(run.source.total_steps)
                  for mb in plan.micro_batches(s))
    return largest * head.shape[0] * max(head.element_size(), 4) > KEEP_PROBS_BYTES


def resolved_settings(run: Any) -> dict[str, Any]:
    """The performance settings duelist chose for itself (the ``auto`` ones resolved)."""
    ln = run.learner
    return {"layout": ln.layout, "reference": run.source.ref_mode, "compile": ln.compiled,
            "keep_probs": ln.module.keep_probs, "grad_accum": run.cfg.train.grad_accum,
            "keep_freed_memory": run.cfg.train.keep_freed_memory}


def run_trl_e2e(args: argparse.Namespace, tmp: Path, setting: str) -> dict[str, Any]:
    from vs_trl import run_trl

    r = run_trl(args, tmp, TRL_CANDIDATES[setting], end_to_end=True)
    r["wall_s"] = process_seconds()
    return {**r, "layout": "rows", "checkpointing": r["settings"]["gradient_checkpointing"], "head_recompute": False}


def floor_flops(r: dict[str, Any]) -> float:
    """The system's FLOP floor for the run (module docstring)."""
    rows = 2 if r["layout"] == "rows" else 1  # the prompt in the chosen and the rejected row, or once per pair
    body_tokens, head_tokens = rows * r["prompt_tokens"] + r["response_tokens"], r["response_tokens"]
    body = (6 + 2 + (2 if r["checkpointing"] else 0)) * r["n_body"] * body_tokens  # policy, reference, recompute
    head = (6 + 2 + (2 if r["head_recompute"] else 0)) * r["n_head"] * head_tokens
    return float(body + head)


# ---------------------------------------------------------------------------------------------- driver


def spawn(args: argparse.Namespace, argv: list[str], system: str, tmp: Path, steps: int,
          fatal: bool = True) -> dict[str, Any] | None:
    """One system in a fresh process with cold caches of its own; its result with ``wall_s`` from its start
    (``None`` if it failed and not ``fatal``)."""
    from duelist.models.load import cache_dir

    own = Path(tempfile.mkdtemp(dir=tmp, prefix=system.replace(":", "-") + "-"))
    cache = own / "duelist-cache"
    cache.mkdir()
    models = cache_dir() / "models"
    if models.is_dir():
        (cache / "models").symlink_to(models)  # the weights: warm for every system alike
    env = {**os.environ, "TQDM_DISABLE": "1", "DUELIST_CACHE": str(cache), "HF_DATASETS_CACHE": str(own / "hf"),
           "TORCHINDUCTOR_CACHE_DIR": str(own / "inductor"), "TRITON_CACHE_DIR": str(own / "triton")}
    cmd = [sys.executable, str(Path(__file__).with_name("vs_trl.py")), *argv, "--steps", str(steps),
           "--worker", f"e2e:{system}", "--tmp", str(own)]
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=own)
    if out.returncode:
        if not fatal:
            print(f"{system} failed: {out.stderr.strip().splitlines()[-1:]}", flush=True)
            return None
        sys.exit(f"{system} failed:\n{out.stderr[-4000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["spawn_s"] = time.perf_counter() - t
    return r


def worker(args: argparse.Namespace, system: str) -> dict[str, Any]:
    name, _, setting = system.partition(":")
    if name == "duelist":
        return run_duelist_defaults(args, args.tmp)
    return run_trl_e2e(args, args.tmp, setting)


def predicted_s(r: dict[str, Any], probe_steps: int, steps: int) -> float:
    """A probe's full-run time: its fixed costs, its reference precompute scaled to the run's pairs, its first
    step and the median of the later ones for the rest."""
    t = r["times"]
    fixed = r["wall_s"] - sum(t) - r.get("precompute_s", 0.0)
    return fixed + r.get("precompute_s", 0.0) * steps / probe_steps + t[0] + statistics.median(t[1:]) * (steps - 1)


def probe(args: argparse.Namespace, argv: list[str], tmp: Path) -> tuple[str, dict[str, float]]:
    """Every candidate but the shipped defaults (measured in full anyway) for ``--probe-steps`` steps."""
    guesses = {}
    for name in (c for c in TRL_CANDIDATES if c != "defaults"):
        r = spawn(args, argv, f"trl:{name}", tmp, args.probe_steps, fatal=False)
        if r is None:
            continue
        guesses[name] = predicted_s(r, args.probe_steps, args.steps)
        print(f"probe trl:{name}: {r['wall_s']:.0f}s for {args.probe_steps} steps, predicted "
              f"{guesses[name]:.0f}s for {args.steps}", flush=True)
    return min(guesses, key=guesses.__getitem__), guesses


def matmul_rates(cuda: bool) -> dict[str, float]:
    """The device's matmul rates, GFLOP/s: bf16 on GPU; on CPU float32 by ATen's BLAS and by oneDNN, the
    faster of which the floors are taken at (the machine's best)."""
    import torch

    if cuda:
        rates = {"bf16": matmul_gflops(8192, device="cuda", dtype=torch.bfloat16)}
    else:
        from duelist.models.onednn import available

        rates = {"fp32 ATen": matmul_gflops(), **({"fp32 oneDNN": matmul_gflops(onednn=True)} if available() else {})}
    print("matmul " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items()) + f" GFLOP/s "
          f"(load average {os.getloadavg()[0]:.2f})", flush=True)
    return rates


def main(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    import torch
    from vs_trl import model_dir, precision

    from duelist.train.host import default_threads

    argv = strip(argv, {"--steps", "--rounds", "--trl-best", "--probe-steps", "--out"})
    cuda = args.device == "cuda"
    if not cuda:
        torch.set_num_threads(default_threads(1))
    rates = matmul_rates(cuda)
    gflops = max(rates.values())
    summary: dict[str, Any] = {"mode": "end-to-end", "device": args.device, "model": args.model, "data": args.data,
                               "seq_len": args.seq_len, "batch": args.batch, "steps": args.steps,
                               "precision": precision(args), "matmul_gflops": gflops, "matmul_rates": rates,
                               "load_average": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_dir(args, tmp)  # a random-init model: created and saved once, every worker loads it
        if cuda:
            torch.cuda.empty_cache()
        best = args.trl_best
        if best == "probe":
            best, summary["probe_predicted_s"] = probe(args, argv, tmp)
        summary["trl_best"], summary["trl_best_settings"] = best, TRL_CANDIDATES[best]
        systems = ["duelist", "trl:defaults", *([f"trl:{best}"] if best != "defaults" else [])]
        rounds = []
        for k in range(args.rounds):  # alternating: a drift of the shared machine hits every system
            rnd = {}
            for s in systems:
                r = rnd[s] = spawn(args, argv, s, tmp, args.steps)
                assert r is not None
                r["floor_s"] = floor_flops(r) / (gflops * 1e9)
                print(f"{s:>36} (round {k + 1}): {r['wall_s']:7.1f} s end to end ({r['wall_s'] / r['floor_s']:.2f}× "
                      f"its floor of {r['floor_s']:.1f} s), peak {r['peak_gib']:.2f} GiB, first losses "
                      f"{', '.join(f'{x:.6f}' for x in r['losses'][:4])}", flush=True)
            rounds.append(rnd)
    # measured again after the runs: the floors are taken at the faster of the two (a shared machine's load
    # can only have slowed a measurement down)
    after = matmul_rates(cuda)
    if max(after.values()) > gflops:
        for rnd in rounds:
            for r in rnd.values():
                r["floor_s"] *= gflops / max(after.values())
        gflops = summary["matmul_gflops"] = max(after.values())
    summary["matmul_rates_after"] = after
    return summarise(summary, rounds, systems)


def summarise(summary: dict[str, Any], rounds: list[dict[str, Any]], systems: list[str]) -> dict[str, Any]:
    """Medians over rounds of each system's figures and of the per-round ratios."""
    med = statistics.median
    summary["systems"] = {s: {"wall_s": med([r[s]["wall_s"] for r in rounds]),
                              "peak_gib": med([r[s]["peak_gib"] for r in rounds]),
                              "floor_s": rounds[0][s]["floor_s"],
                              "over_floor": med([r[s]["wall_s"] / r[s]["floor_s"] for r in rounds]),
                              "settings": rounds[0][s]["settings"]} for s in systems}
    for s, v in summary["systems"].items():
        print(f"{s:>36}: median {v['wall_s']:7.1f} s end to end, FLOP floor {v['floor_s']:.1f} s at "
              f"{summary['matmul_gflops']:.1f} GFLOP/s ({v['over_floor']:.2f}× it), peak {v['peak_gib']:.2f} GiB, "
              f"settings {v['settings']}", flush=True)
    trls = [s for s in systems if s.startswith("trl")]
    d = "duelist"
    summary["e2e_speedup_defaults"] = med([r["trl:defaults"]["wall_s"] / r[d]["wall_s"] for r in rounds])
    # TRL at its best: the faster of its runs in the round (its shipped defaults included)
    summary["e2e_speedup_best"] = med([min(r[s]["wall_s"] for s in trls) / r[d]["wall_s"] for r in rounds])
    summary["e2e_memory_ratio"] = med([r[d]["peak_gib"] / r["trl:defaults"]["peak_gib"] for r in rounds])
    summary["floor_ratio"] = summary["systems"][d]["over_floor"]
    diff = max(abs(a - b) for r in rounds for s in trls for a, b in zip(r[d]["losses"][:4], r[s]["losses"][:4],
                                                                            strict=True))
    summary["loss_max_diff"], summary["loss_match"] = diff, diff <= LOSS_TOL
    summary["rounds"] = rounds
    print(f"duelist at defaults, end to end: {summary['e2e_speedup_defaults']:.2f}× TRL's shipped defaults, "
          f"{summary['e2e_speedup_best']:.2f}× TRL at its best (trl:{summary['trl_best']}), "
          f"{summary['e2e_memory_ratio']:.2f}× the defaults' peak memory, {summary['floor_ratio']:.2f}× its FLOP "
          f"floor; first losses differ by ≤ {diff:.2e}", flush=True)
    return summary


def strip(argv: list[str], options: set[str]) -> list[str]:
    """``argv`` without the driver-only ``options`` (each with its value)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in options:
            skip = True
        elif a.split("=", 1)[0] not in options:
            out.append(a)
    return out
