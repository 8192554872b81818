"""duelist's reward-model learner vs TRL's RewardTrainer, side by side in one run (a benchmark, not a test).

Both systems train the same Bradley–Terry reward model: the same backbone (full fine-tuning), the same head
initialisation (a scalar head without bias at the sequence's last token: TRL's ``score`` layer, duelist's
``bt`` head, both set to one seeded tensor), the same token ids in the same order (hh-harmless pairs or fixed
lengths), the same batch, and AdamW at a constant learning rate with clipping at 1.0, in float32. The pad token is
set apart from EOS for both, since TRL's sequence classifier reads the last non-pad token and duelist the EOS.
TRL runs twice: at its shipped defaults (gradient checkpointing on) and at its best setting here (checkpointing
off). Each system runs in its own subprocess, so peak memory (peak RSS on CPU, max allocated on GPU) is its own.

Reported per system: whole-run time of the training steps, tokens/s (median after warm-up), peak memory and the
first steps' losses; the last line printed is one JSON object with duelist's speed-up and memory ratio against
each TRL setting and ``loss_match`` (first losses within 1e-4). duelist computes the prompt once per pair
(``train.layout=shared``); TRL runs prompt + response for chosen and rejected.

    pip install -e '.[bench]'                     # TRL is a benchmark-only extra
    python benchmarks/vs_trl_rm.py --data hh       # CPU, default model, real hh-harmless lengths
    python benchmarks/vs_trl_rm.py --model tiny    # a quick check of the harness
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

import torch
from trl_clock import step_clock
from vs_trl import RANDOM_MODELS, make_pairs, model_dir, peak_memory_gib, random_dtype, synthetic_tokenizer

LR, SEED = 1e-4, 0  # TRL's default learning rate
LOSS_STEPS = 3
PAD_TOKEN_ID = 0  # SmolLM2's <|endoftext|>; the synthetic tokenizer's t0: not the EOS either way
SYSTEMS = {
    "trl-defaults": {},
    "trl-best": {"gradient_checkpointing": False},
    "duelist": ["train.layout=shared"],
}


def head_init(hidden: int) -> torch.Tensor:
    """The scalar head both systems start from: N(0, 1/(H+1)) (OpenRLHF's value head), seeded."""
    g = torch.Generator().manual_seed(SEED + 1)
    return torch.randn(1, hidden, generator=g) / (hidden + 1)


def tokens_of(pairs: list[dict[str, list[int]]], batch: int, steps: int) -> list[int]:
    """Prompt + response tokens of every chosen and rejected sequence, per step (TRL's count; duelist's is less
    by one prompt per pair, the point of computing it once, so both are credited with the same work)."""
    return [sum(2 * len(p["prompt_ids"]) + len(p["chosen_ids"]) + len(p["rejected_ids"])
                for p in pairs[s * batch : (s + 1) * batch]) for s in range(steps)]


def tokenizer_for(args: argparse.Namespace, path: str) -> Any:
    from duelist.config import ModelConfig
    from duelist.models.load import load_tokenizer

    tok = load_tokenizer(ModelConfig(name=path)) if args.model == "default" else synthetic_tokenizer(
        RANDOM_MODELS[args.model]["vocab_size"])
    tok.pad_token = tok.convert_ids_to_tokens(PAD_TOKEN_ID)
    return tok


def run_trl(args: argparse.Namespace, tmp: Path, settings: dict[str, Any]) -> dict[str, Any]:
    import datasets
    from torch.utils.data import SequentialSampler
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from duelist.models.load import default_model_dir

    class Trainer(RewardTrainer):
        def _get_train_sampler(self, *a, **k):  # the same order as duelist
            return SequentialSampler(self.train_dataset)

    cuda = args.device == "cuda"
    path = model_dir(args, tmp)
    source = str(default_model_dir()) if path == "default" else path
    tok = tokenizer_for(args, path)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=1, dtype=random_dtype(args.device), pad_token_id=PAD_TOKEN_ID
    ).to(args.device)
    with torch.no_grad():
        model.score.weight.copy_(head_init(model.config.hidden_size))
    pairs = make_pairs(args, tok, args.batch * args.steps)
    rows = [{"chosen_ids": p["prompt_ids"] + p["chosen_ids"], "rejected_ids": p["prompt_ids"] + p["rejected_ids"]}
            for p in pairs]
    cfg = RewardConfig(
        output_dir=str(tmp / "trl"), per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
        learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, max_steps=args.steps, max_grad_norm=1.0,
        weight_decay=0.0, logging_steps=1, report_to=[], save_strategy="no", bf16=cuda, use_cpu=not cuda,
        max_length=None, seed=SEED, data_seed=SEED, dataloader_num_workers=0, disable_tqdm=True, **settings,
    )
    clock = step_clock()
    trainer = Trainer(model=model, args=cfg, train_dataset=datasets.Dataset.from_list(rows), processing_class=tok,
                      callbacks=[clock])
    t0 = time.perf_counter()
    trainer.train()
    return {"run_s": time.perf_counter() - t0, "times": clock.times, "losses": clock.losses,
            "tokens": tokens_of(pairs, args.batch, args.steps), "peak_gib": peak_memory_gib()}


def run_duelist(args: argparse.Namespace, tmp: Path, overrides: list[str]) -> dict[str, Any]:
    from duelist.config import load_config
    from duelist.data.tokenize import TokenizedPair
    from duelist.train.run import Run

    path = model_dir(args, tmp)
    cfg = load_config(None, [
        f"model.name={path}", f"train.output_dir={tmp / 'duelist'}", f"train.steps={args.steps}",
        f"train.batch_size={args.batch}", "reward_model.kind.name=bt", f"optim.lr={LR}", "optim.warmup=0",
        "optim.schedule=constant", "optim.max_grad_norm=1.0", "optim.weight_decay=0", "data.shuffle=false",
        f"train.seed={SEED}", "train.progress=false", "train.tensorboard=false", "train.save_final=false",
        f"model.dtype={'bfloat16' if args.device == 'cuda' else 'float32'}", *overrides,
    ])
    tok = tokenizer_for(args, path)
    pairs = make_pairs(args, tok, args.batch * args.steps)
    # the pad token does not matter to duelist: it reads each response's EOS, and padding is masked
    run = Run(cfg, pairs=[TokenizedPair(p["prompt_ids"], p["chosen_ids"], p["rejected_ids"]) for p in pairs])
    with torch.no_grad():
        run.learner.head.value[0].weight.copy_(head_init(run.learner.head.value[0].weight.shape[1]))
    times, losses = [], []
    t0 = time.perf_counter()
    for step in range(args.steps):
        t = time.perf_counter()
        m = run.step(step)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        losses.append(m["loss"])
    return {"run_s": time.perf_counter() - t0, "times": times, "losses": losses,
            "tokens": tokens_of(pairs, args.batch, args.steps), "peak_gib": peak_memory_gib()}


def summarise(r: dict[str, Any], warmup: int) -> dict[str, Any]:
    rates = [t / dt for t, dt in zip(r["tokens"][warmup:], r["times"][warmup:], strict=True)]
    return {"run_s": r["run_s"], "tokens_per_s": statistics.median(rates), "peak_gib": r["peak_gib"],
            "losses": r["losses"][:LOSS_STEPS]}


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", choices=["default", *RANDOM_MODELS], default="default")
    ap.add_argument("--data", choices=["fixed", "hh"], default="hh")
    ap.add_argument("--seq-len", type=int, default=160, help="fixed: tokens per sequence; hh: max length")
    ap.add_argument("--batch", type=int, default=8, help="pairs per step")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", type=Path, help="also write the results JSON here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.mixed_bf16, args.trl_keep_freed_memory = False, False  # what vs_trl's helpers read

    if args.worker:
        setting = SYSTEMS[args.worker]
        res = run_duelist(args, args.tmp, setting) if args.worker == "duelist" else run_trl(args, args.tmp, setting)
        print(json.dumps(res))
        return

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in SYSTEMS:
            cmd = [sys.executable, __file__, *argv, "--worker", name, "--tmp", tmp]
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
            if out.returncode:
                sys.exit(f"{name} failed:\n{out.stderr[-4000:]}")
            r = results[name] = summarise(json.loads(out.stdout.strip().splitlines()[-1]), args.warmup)
            print(f"{name:>12}: run {r['run_s']:7.1f}s, {r['tokens_per_s']:8.1f} tokens/s, peak {r['peak_gib']:.2f} "
                  f"GiB, losses {', '.join(f'{x:.6f}' for x in r['losses'])}", flush=True)
    d = results["duelist"]
    summary: dict[str, Any] = {"model": args.model, "data": args.data, "seq_len": args.seq_len, "batch": args.batch,
                               "steps": args.steps, "results": results}
    for trl in ("trl-defaults", "trl-best"):
        t = results[trl]
        summary[f"speedup_vs_{trl}"] = t["run_s"] / d["run_s"]
        summary[f"memory_ratio_vs_{trl}"] = d["peak_gib"] / t["peak_gib"]
        summary[f"loss_max_diff_vs_{trl}"] = max(abs(a - b) for a, b in zip(d["losses"], t["losses"], strict=True))
    summary["loss_match"] = all(summary[f"loss_max_diff_vs_{t}"] <= 1e-4 for t in ("trl-defaults", "trl-best"))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}))


if __name__ == "__main__":
    main(sys.argv[1:])
