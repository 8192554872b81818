"""duelist's online DPO round vs TRL 1.16's experimental OnlineDPOTrainer, side by side in one run (a benchmark,
not a test).

Both systems train the embedded SmolLM2-135M-Instruct (loaded by duelist's loader for both, float32 weights) on
the same positive-review prompts in the same order (the first ``steps × 8``, unshuffled), K = 2 samples per
prompt, 32 new tokens at most, temperature 1, the lexicon judge (VADER compound; for TRL a reward function
over the completions' text; higher score chosen, ties to the first sample in both), DPO with β = 0.1 against
the initial model, 8 prompts per step and AdamW (lr 5e-5 constant, no weight decay, clipping at 1.0).
duelist runs the bundled ``online-positive-review`` config with those settings (``DUELIST``). TRL runs at
its shipped defaults (``bf16=True``, i.e. bfloat16 autocast on CPU, and ``gradient_checkpointing=True``,
which also turns generation's KV cache off) and at the other settings in ``TRL_SETTINGS``; the fastest of
them is its best CPU setting here. Each system runs in its own subprocess, so peak RSS is its own.

Reported per system: prompts/s per round (median over the rounds after warm-up), peak RSS, generation
tokens/s. From the same run: the fp32 matmul rate (one large square matmul) and the memory bandwidth
(a large tensor copy, read + write bytes), and from them

* duelist's FLOP floor per round: generation 2N per token (each prompt prefilled once, then every generated
  token), the reference forward 2N and the policy forward + backward 6N per token of the pairs (the prompt
  counted once per pair), N the parameter count (the tied head included once: its matmul is real work),
  at the measured matmul rate; and duelist's round time over that floor;
* the generation limit at the benchmark's batch of B = 16 rows: a decode step costs at least
  max(2N·B / matmul rate, 4N bytes / bandwidth), so B / that is the most tokens/s; duelist's share of it.

The last line printed is one JSON object.

    pip install -e '.[bench]'                                   # TRL and psutil: benchmark-only extras
    python benchmarks/vs_trl_online.py                           # duelist + every TRL setting
    python benchmarks/vs_trl_online.py --systems duelist,trl:defaults --steps 5 --warmup 2
    pip install --no-deps --target /tmp/trl-1.13 trl==1.13.0       # the last TRL with NashMDTrainer
    python benchmarks/vs_trl_online.py --systems duelist-nash_md,trl-nash_md:defaults --trl-nash-path /tmp/trl-1.13
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from hardware import bandwidth_gbs, matmul_gflops
from trl_clock import step_clock

SEED, LR, BETA, K, PROMPTS, MAX_NEW, TEMPERATURE = 0, 5e-5, 0.1, 2, 8, 32, 1.0
SPEC = "positive-review:prompts"
MAX_PROMPT = 96  # the bundled config's online.max_prompt_length; these prompts are shorter

# duelist's method per comparison: online DPO (K = 2) against OnlineDPOTrainer; Nash-MD with TRL's NashMDTrainer
# settings (β = ητ = 0.5 mixture weight, τ = 0.1 its KL coefficient), with the fewest samples duelist allows:
# K = 2 policy samples and one mixture opponent per prompt (TRL: one of each)
METHODS = {
    "online_dpo": ["online.method.name=online_dpo", f"online.method.samples={K}", f"online.method.beta={BETA}"],
    "nash_md": ["online.method.name=nash_md", "online.method.samples=2", "online.method.opponents=1",
                "online.method.eta=5.0", f"online.method.tau={BETA}"],
}
# duelist's systems: the method and any overrides beyond the bundled config's (``duelist-bf16``: the matmuls
# under bfloat16 autocast, TRL's shipped precision; generation stays float32)
DUELIST_SYSTEMS = {
    "duelist": ("online_dpo", []),
    "duelist-bf16": ("online_dpo", ["train.mixed_precision=bf16"]),
    "duelist-nash_md": ("nash_md", []),
}
DUELIST = [
    f"online.max_new_tokens={MAX_NEW}",
    f"online.temperature={TEMPERATURE}", f"train.batch_size={PROMPTS}", f"optim.lr={LR}", "optim.warmup=0",
    "optim.schedule=constant", "optim.max_grad_norm=1.0", "optim.weight_decay=0", "data.shuffle=false",
    f"train.seed={SEED}", "train.progress=false", "train.tensorboard=false", "train.save_final=false",
    "train.save_every=0",
]

# TRL OnlineDPOConfig fields per setting, on top of the matched ones (``trl_config``)
TRL_SETTINGS: dict[str, dict[str, Any]] = {
    "defaults": {},  # as shipped: bf16=True, gradient_checkpointing=True (generation then without KV cache)
    "fp32": {"bf16": False},
    "no-checkpointing": {"gradient_checkpointing": False},  # bf16 autocast, generation with the KV cache
    "fp32-no-checkpointing": {"bf16": False, "gradient_checkpointing": False},
}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def prompts_for(steps: int) -> list[Any]:
    """The records whose prompts both systems see, in order (duelist's plan unshuffled takes the same)."""
    from duelist.data.sources import read_records

    return [r.data["prompt"] for r in read_records(SPEC, "prompts")][: steps * PROMPTS]


# --------------------------------------------------------------------------------------------- workers


def lexicon_reward(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
    """The lexicon judge's score as a TRL reward function (conversational completions: the message text)."""
    from duelist.judges.lexicon import sentiment

    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return sentiment(texts).tolist()


def trl_config(kind: str, setting: str, steps: int, out: Path) -> Any:
    if kind == "nash_md":
        from trl.experimental.nash_md import NashMDConfig as Config
    else:
        from trl.experimental.online_dpo import OnlineDPOConfig as Config
    return Config(
        output_dir=str(out), per_device_train_batch_size=PROMPTS, gradient_accumulation_steps=1, max_steps=steps,
        learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        beta=BETA, max_new_tokens=MAX_NEW, temperature=TEMPERATURE, use_cpu=True, seed=SEED, data_seed=SEED,
        logging_steps=1, report_to=[], save_strategy="no", dataloader_num_workers=0, disable_tqdm=True,
        **TRL_SETTINGS[setting],
    )


def trl_trainer(kind: str, gen: list[tuple[float, int]]) -> type:
    """TRL's trainer as it ships, fed the prompts in order, its generation timed into ``gen``."""
    from torch.utils.data import SequentialSampler

    if kind == "nash_md":  # TRL ≤ 1.13 (the worker's PYTHONPATH)
        from trl.experimental.nash_md import NashMDTrainer as Base

        from duelist.judges.lexicon import sentiment

        class Trainer(Base):
            def _generate_completions(self, model: Any, prompts: Any) -> Any:
                t = time.perf_counter()
                out = super()._generate_completions(model, prompts)
                n = prompts["input_ids"].shape[1]
                gen.append((time.perf_counter() - t, sum(int((o[:, n:] != self.processing_class.pad_token_id)
                                                               .sum()) for o in out)))
                return out

            def _compute_rewards(self, model_data: Any, mixture_data: Any, context_length: int) -> Any:
                """The lexicon score of each completion's text: TRL ≤ 1.13's Nash-MD scores through a
                sequence-classification reward model only (``get_reward``), so its reward call is replaced."""
                def score(d: Any) -> torch.Tensor:
                    texts = self.processing_class.batch_decode(d["input_ids"][:, context_length:],
                                                               skip_special_tokens=True)
                    return torch.tensor(sentiment(texts), dtype=torch.float32)

                return score(model_data), score(mixture_data)
    else:
        from trl.experimental.online_dpo import OnlineDPOTrainer as Base

        class Trainer(Base):  # type: ignore[no-redef]
            def _generate(self, *a: Any, **k: Any) -> Any:
                t = time.perf_counter()
                out = super()._generate(*a, **k)
                gen.append((time.perf_counter() - t, int(out[3].sum())))
                return out

    def sampler(self: Any, *a: Any, **k: Any) -> Any:
        return SequentialSampler(self.train_dataset)

    Trainer._get_train_sampler = sampler
    return Trainer


def run_trl(kind: str, setting: str, steps: int, tmp: Path) -> dict[str, Any]:
    import datasets
    import trl

    from duelist.config import ModelConfig
    from duelist.models.load import load_model

    gen: list[tuple[float, int]] = []  # per round: generation seconds, generated tokens
    # duelist's loader (the GGUF dequantized once, cached as safetensors, quantizer flag cleared), but plain
    # transformers linear layers: TRL gets the model as transformers builds it, not duelist's oneDNN layers
    model, tok = load_model(ModelConfig(name="default", onednn_linear=False), "cpu")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    clock = step_clock()
    cfg = trl_config(kind, setting, steps, tmp / "trl")
    data = datasets.Dataset.from_list([{"prompt": p} for p in prompts_for(steps)])
    trainer = trl_trainer(kind, gen)(model=model, reward_funcs=lexicon_reward, args=cfg, train_dataset=data,
                                     processing_class=tok, callbacks=[clock])
    trainer.train()
    return {"times": clock.times, "gen_times": [g[0] for g in gen], "gen_tokens": [g[1] for g in gen],
            "peak_gib": peak_rss_gib(), "threads": torch.get_num_threads(), "trl": trl.__version__,
            "settings": {k: getattr(cfg, k) for k in ("bf16", "gradient_checkpointing")},
            "prompt_ids": _trl_prompt_ids(tok, steps)}


def _trl_prompt_ids(tok: Any, steps: int) -> list[list[int]]:
    """The prompt token ids TRL's ``_generate`` builds (chat template, no special tokens added)."""
    from trl.data_utils import maybe_apply_chat_template

    texts = [maybe_apply_chat_template({"prompt": p}, tok)["prompt"] for p in prompts_for(steps)]
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


class RecordingSampler:
    """duelist's sampler, keeping the last round's draws (their lengths give the FLOP floor)."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.last: list[Any] = []

    def draw(self, *a: Any, **k: Any) -> list[Any]:
        self.last = self.inner.draw(*a, **k)
        return self.last


def run_duelist(method: str, steps: int, tmp: Path, overrides: list[str]) -> dict[str, Any]:
    from duelist.config import load_config
    from duelist.config_files import resolve_config
    from duelist.models.load import load_tokenizer
    from duelist.sample.samplers import GenerateSampler
    from duelist.train.run import Run

    cfg = load_config(resolve_config("online-positive-review"), [
        *DUELIST, *METHODS[method], f"train.steps={steps}", f"train.output_dir={tmp / 'duelist'}", *overrides,
    ])
    assert cfg.online is not None
    tok = load_tokenizer(cfg.model)
    o = cfg.online
    sampler = RecordingSampler(GenerateSampler(o.max_new_tokens, o.temperature, tok.eos_token_id, tok.pad_token_id,
                                               o.prompts_per_chunk))
    run = Run(cfg, tokenizer=tok, sampler=sampler)
    times, gen_times, gen_tokens, tokens, prefill, rounds = [], [], [], [], [], []
    for step in range(steps):
        t0 = time.perf_counter()
        m = run.step(step)
        times.append(time.perf_counter() - t0)
        ids = [run.source.prompts[i].ids for i in run.source.plan.global_batch(step)]
        generated = sum(len(s.ids) for d in sampler.last for s in d.samples)
        gen_times.append(m["time/generate"])
        gen_tokens.append(generated)
        prefill.append(sum(len(p) for p in ids))
        tokens.append(prefill[-1] + generated)  # the pairs' tokens, each prompt once
        rounds.append({k: m[k] for k in ("time/generate", "time/judge", "time/score", "time/update", "loss")
                       if k in m})
    prompt_ids = [p.ids for p in run.source.prompts[: steps * PROMPTS]]
    return {"times": times, "gen_times": gen_times, "gen_tokens": gen_tokens, "pair_tokens": tokens,
            "prefill_tokens": prefill, "rounds": rounds, "peak_gib": peak_rss_gib(),
            "threads": torch.get_num_threads(), "params": sum(p.numel() for p in run.learner.model.parameters()),
            "prompt_ids": prompt_ids}


# ---------------------------------------------------------------------------------------------- driver


def worker(system: str, steps: int, overrides: list[str]) -> dict[str, Any]:
    """One of ``DUELIST_SYSTEMS`` or ``trl[-nash_md]:SETTING``."""
    with tempfile.TemporaryDirectory() as tmp:
        if system in DUELIST_SYSTEMS:
            method, extra = DUELIST_SYSTEMS[system]
            return run_duelist(method, steps, Path(tmp), [*extra, *overrides])
        name, _, setting = system.partition(":")
        return run_trl(name.partition("-")[2] or "online_dpo", setting, steps, Path(tmp))


def spawn(system: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", system, "--steps", str(args.steps), *args.overrides]
    env = dict(os.environ)
    if system.startswith("trl-nash_md"):
        if not args.trl_nash_path:
            raise SystemExit("trl-nash_md needs --trl-nash-path (TRL 1.14 removed NashMDTrainer)")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.trl_nash_path, env.get("PYTHONPATH")]))
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        return {"error": f"worker failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"}
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["wall_s"] = time.perf_counter() - t
    return r


def summarise(r: dict[str, Any], warmup: int) -> dict[str, Any]:
    times = r["times"][warmup:]
    gen = [n / t for n, t in zip(r["gen_tokens"][warmup:], r["gen_times"][warmup:], strict=True)]
    out = {"prompts_per_s": PROMPTS / statistics.median(times), "round_s": statistics.median(times),
           "round_times": r["times"], "peak_gib": r["peak_gib"], "gen_tokens_per_s": statistics.median(gen),
           "threads": r["threads"]}
    return out | ({"settings": r["settings"]} if "settings" in r else {})


def floor_report(r: dict[str, Any], warmup: int, gflops: float, gbs: float) -> dict[str, Any]:
    """duelist's FLOP floor per round and generation limit at the benchmark's batch (module docstring).
    ``floor_s`` counts generation at 2N per generated token only, as the issue states it; ``floor_prefill_s``
    also counts each prompt's prefill once (2N per prompt token)."""
    n, rate = r["params"], gflops * 1e9
    floors = [(2 * n * g + 8 * n * t) / rate for g, t in zip(r["gen_tokens"], r["pair_tokens"], strict=True)]
    prefill = [f + 2 * n * p / rate for f, p in zip(floors, r["prefill_tokens"], strict=True)]
    rows = PROMPTS * K
    compute, memory = 2 * n * rows / rate, 4 * n / (gbs * 1e9)  # one decode step of all rows
    limit = rows / max(compute, memory)
    gen = statistics.median([g / t for g, t in zip(r["gen_tokens"][warmup:], r["gen_times"][warmup:], strict=True)])
    return {"params": n, "floor_s": statistics.median(floors[warmup:]),
            "floor_prefill_s": statistics.median(prefill[warmup:]),
            "round_over_floor": statistics.median(
                [dt / f for dt, f in zip(r["times"][warmup:], floors[warmup:], strict=True)]),
            "gen_limit_tokens_per_s": limit, "gen_bound": "compute" if compute > memory else "memory",
            "gen_share_of_limit": gen / limit}


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--systems", default="duelist,duelist-bf16," + ",".join(f"trl:{s}" for s in TRL_SETTINGS),
                    help=f"comma-separated: {', '.join(DUELIST_SYSTEMS)}, trl:SETTING, trl-nash_md:SETTING")
    ap.add_argument("--trl-nash-path", help="a folder holding TRL ≤ 1.13 (pip install --no-deps --target DIR "
                    "trl==1.13.0), put first on the trl-nash_md workers' PYTHONPATH")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="duelist config overrides (key=value)")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.overrides)))
        return
    from duelist.train.host import default_threads

    torch.set_num_threads(default_threads(1))
    gflops, gbs = matmul_gflops(), bandwidth_gbs()
    print(f"fp32 matmul {gflops:.1f} GFLOP/s, copy bandwidth {gbs:.1f} GB/s, {torch.get_num_threads()} threads")
    raw = {}
    for system in args.systems.split(","):
        r = spawn(system, args)
        if "error" in r:
            print(f"{system:28s} {r['error']}", flush=True)
            continue
        raw[system] = r
        s = summarise(r, args.warmup)
        print(f"{system:28s} {s['prompts_per_s']:.3f} prompts/s ({s['round_s']:.2f} s/round)  peak "
              f"{s['peak_gib']:.2f} GiB  gen {s['gen_tokens_per_s']:.1f} tokens/s  rounds "
              + " ".join(f"{t:.2f}" for t in s["round_times"]), flush=True)
        for i, rnd in enumerate(r.get("rounds", [])):
            print(f"    round {i + 1}: " + "  ".join(f"{k} {v:.2f}" for k, v in rnd.items()), flush=True)
    systems = {k: summarise(v, args.warmup) for k, v in raw.items()}
    summary: dict[str, Any] = {"matmul_gflops": gflops, "bandwidth_gbs": gbs, "steps": args.steps,
                               "warmup": args.warmup, "overrides": args.overrides, "systems": systems}
    if "duelist" in raw:
        d = systems["duelist"]
        d.update(floor_report(raw["duelist"], args.warmup, gflops, gbs))
        print(f"duelist floor {d['floor_s']:.2f} s/round ({d['floor_prefill_s']:.2f} s with the prefill) at "
              f"{gflops:.0f} GFLOP/s: round {d['round_over_floor']:.2f}× the floor; generation "
              f"{d['gen_tokens_per_s']:.1f} tokens/s = {d['gen_share_of_limit']:.0%} of the "
              f"{d['gen_limit_tokens_per_s']:.0f} tokens/s limit ({d['gen_bound']}-bound at {PROMPTS * K} rows)")
    for ours, theirs in (("duelist", "trl:"), ("duelist-bf16", "trl:"), ("duelist-nash_md", "trl-nash_md:")):
        trls = {k: v for k, v in systems.items() if k.startswith(theirs)}
        if ours not in systems or not trls:
            continue
        d = systems[ours]
        for k, t in trls.items():
            speed, memory = d["prompts_per_s"] / t["prompts_per_s"], d["peak_gib"] / t["peak_gib"]
            t[f"{ours}_speedup"], t[f"{ours}_memory_ratio"] = speed, memory
            t["same_prompt_ids"] = raw[k]["prompt_ids"] == raw[ours]["prompt_ids"]
            print(f"  {ours} vs {k} (TRL {raw[k]['trl']}): {speed:.2f}× speed, {memory:.2f}× memory, "
                  f"same prompt ids: {t['same_prompt_ids']}")
        best = max(trls, key=lambda k: trls[k]["prompts_per_s"])
        defaults = trls.get(theirs + "defaults", {})
        summary[ours] = {"best_trl": best, "speedup_vs_best": trls[best][f"{ours}_speedup"],
                         "speedup_vs_defaults": defaults.get(f"{ours}_speedup"),
                         "memory_vs_defaults": defaults.get(f"{ours}_memory_ratio")}
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv[1:])
