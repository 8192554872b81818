"""duelist vs TRL's DPOTrainer, side by side in one run (a benchmark, not a test).

Both systems train the identical model on the identical token ids (same pairs, same order), with the same
batch, loss (DPO, β = 0.1), optimizer (AdamW, constant learning rate, clipping at 1.0) and precision
(float32 on CPU, or with ``--mixed-bf16`` both in bf16 mixed precision; bfloat16 weights on GPU). TRL
otherwise keeps its shipped defaults, gradient checkpointing included (``--trl-no-checkpointing`` turns it
off: TRL is then faster and larger; ``--trl-keep-freed-memory`` gives it duelist's CPU memory setting,
``train.keep_freed_memory``). Each system runs in its own subprocess, so peak memory is its own: peak RSS
on CPU, max allocated on GPU.
Tokens are prompt + response tokens of every chosen and rejected sequence (the same count for both).

Reported per system: tokens/s (median over the steps after warm-up), peak memory, the first steps'
losses, and on a GPU whose bf16 peak is known the share of it by 6N accounting (``mfu``). duelist runs at
two operating points (``POINTS``): *speed* and *memory*. The last line printed is one JSON object with
``speedup`` (duelist speed point / TRL tokens/s), ``memory_ratio`` (duelist speed point / TRL peak), the
same two for the memory point, ``speed_mfu``, and ``loss_match`` (first steps' losses within 1e-3 for both
points).

    pip install -e '.[bench]'                  # TRL is a benchmark-only extra
    python benchmarks/vs_trl.py                 # CPU, default model, fixed 144-token sequences
    python benchmarks/vs_trl.py --data hh       # real hh-harmless length spread
    python benchmarks/vs_trl.py --device cuda --model llama-1.7b --seq-len 1024 --out gpu.json
    python benchmarks/vs_trl.py --end-to-end    # whole runs, duelist at its defaults (vs_trl_e2e.py)

With ``--end-to-end`` (``vs_trl_e2e.py``) each system's whole run is timed from its process's start to its
final weights on disk; the last line adds ``e2e_speedup_defaults``, ``e2e_speedup_best``, ``e2e_memory_ratio``
and ``floor_ratio`` (duelist's time over its FLOP floor).
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
import vs_trl_e2e
from trl_clock import step_clock

BETA, LR, SEED = 0.1, 2e-5, 0
LOSS_STEPS = 4  # steps whose losses must agree: step 1 is log 2 for both, later ones test the updates

# duelist operating points: config overrides per device
POINTS: dict[str, dict[str, list[str]]] = {
    "cpu": {
        "speed": ["train.layout=shared", "train.reference=precompute", "train.logprob_recompute=false"],
        "memory": ["train.layout=shared", "train.reference=precompute", "model.gradient_checkpointing=true",
                   "train.grad_accum=8", "train.logprob_chunk=64", "train.logprob_recompute=true"],
    },
    "cuda": {
        "speed": ["train.layout=shared", "train.reference=precompute", "optim.fused=true",
                  "train.logprob_recompute=false"],
        "memory": ["train.layout=shared", "train.reference=precompute", "optim.fused=true",
                   "model.gradient_checkpointing=true", "train.logprob_chunk=256", "train.logprob_recompute=true"],
    },
}

# compiled only where shapes repeat: with real length spread inductor recompiles whenever a batch crosses one
# of its size thresholds (minutes each on 2 cores), which a few-step benchmark cannot amortise. Compiled,
# plain (eager) attention is faster on CPU than the flash kernel at these short rows: inductor fuses the
# mask and softmax around two batched matmuls.
COMPILED = {("cpu", "fixed", "speed")}
COMPILE = ["train.compile=true", "model.attn_implementation=eager"]


# with real length spread on CPU (no variable-length attention), one pair per micro-batch: no pair is padded
# to the batch's longest. Same loss and gradients (tested); on hh-harmless 278 instead of 180 tokens/s, and
# 3.7 instead of 9.1 GiB. At fixed lengths there is no padding, and two micro-batches were slower (276 vs 290).
# The memory point on real lengths keeps ATen's linear layers: oneDNN's primitive cache grows with every new
# shape (3.37 against 2.97 GiB here; capped at 8 primitives, 3.18 GiB and slower steps).
PER_DATA = {("cpu", "hh", "speed"): ["train.grad_accum=8"], ("cpu", "hh", "memory"): ["model.onednn_linear=false"]}


def point_overrides(args: argparse.Namespace, point: str) -> list[str]:
    key = (args.device, args.data, point)
    return [*POINTS[args.device][point], *PER_DATA.get(key, []), *(COMPILE if key in COMPILED else [])]


RANDOM_MODELS: dict[str, dict[str, Any]] = {  # random-init Llama-style models
    "llama-1.7b": dict(  # SmolLM2-1.7B's shape
        vocab_size=49152, hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
        num_key_value_heads=32, max_position_embeddings=8192, tie_word_embeddings=True, rope_theta=130000.0,
    ),
    "tiny": dict(  # for a quick check of the harness itself
        vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
    ),
}


def precision(args: argparse.Namespace) -> str:
    if args.device == "cuda":
        return "bfloat16 weights"
    return "bf16 mixed (float32 weights, bfloat16 autocast)" if args.mixed_bf16 else "float32"


def random_dtype(device: str) -> torch.dtype:
    return torch.bfloat16 if device == "cuda" else torch.float32


# ----------------------------------------------------------------------------------------------- data


def make_pairs(args: argparse.Namespace, tokenizer: Any, n: int) -> list[dict[str, list[int]]]:
    """``n`` pairs of token ids: fixed lengths (random ids) or real hh-harmless pairs (their own lengths)."""
    if args.data == "fixed":
        g = torch.Generator().manual_seed(SEED)
        p, r = args.seq_len // 2, args.seq_len - args.seq_len // 2
        vocab = len(tokenizer)

        def ids(k: int) -> list[int]:
            return torch.randint(100, vocab - 100, (k,), generator=g).tolist()

        return [{"prompt_ids": ids(p), "chosen_ids": ids(r), "rejected_ids": ids(r)} for _ in range(n)]
    from duelist.data.formats import validate
    from duelist.data.sources import read_records
    from duelist.data.tokenize import PairTokenizer

    enc = PairTokenizer(tokenizer, max_length=args.seq_len, max_prompt_length=args.seq_len // 2)
    pairs, _, _ = enc.many(validate(read_records("hh-harmless", "train")).examples[:n])
    return [{"prompt_ids": p.prompt, "chosen_ids": p.chosen, "rejected_ids": p.rejected} for p in pairs]


def load(args: argparse.Namespace) -> tuple[Any, Any]:
    """The model and tokenizer, identically for both systems."""
    from duelist.config import ModelConfig
    from duelist.models.load import load_model

    device = torch.device(args.device)
    if args.model == "default":
        return load_model(ModelConfig(name="default"), device)
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    shape = RANDOM_MODELS[args.model]
    model = LlamaForCausalLM(LlamaConfig(**shape)).to(device=device, dtype=random_dtype(args.device))
    return model, synthetic_tokenizer(shape["vocab_size"])


def synthetic_tokenizer(vocab_size: int) -> Any:
    """A word-level tokenizer over ids t0…t{V−1} (t0 pad, t1 BOS, t2 EOS): the random-init model needs no
    real vocabulary, and nothing has to be downloaded or carried."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab_size)}, unk_token="t0"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="t0", bos_token="t1", eos_token="t2",
                                   unk_token="t0")


def model_dir(args: argparse.Namespace, tmp: Path) -> str:
    """duelist loads models by name: save the random-init model once so it loads the same weights."""
    if args.model == "default":
        return "default"
    path = tmp / "model"
    if not path.exists():
        model, tok = load(args)
        model.save_pretrained(path)
        tok.save_pretrained(path)
    return str(path)


def token_counts(pairs: list[dict[str, list[int]]]) -> dict[str, int]:
    """All pairs' prompt tokens and response (chosen + rejected) tokens."""
    return {"prompt_tokens": sum(len(p["prompt_ids"]) for p in pairs),
            "response_tokens": sum(len(p["chosen_ids"]) + len(p["rejected_ids"]) for p in pairs)}


def param_split(model: Any) -> dict[str, int]:
    """Parameters by the work they do per token: ``n_body`` in the decoder's matmuls, ``n_head`` in the output
    projection (the tied embedding counted there; an input embedding is a lookup, no matmul)."""
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    unique = {id(p): p for p in model.parameters()}
    lookups = {id(emb), id(head)}
    return {"n_body": sum(p.numel() for k, p in unique.items() if k not in lookups), "n_head": head.numel()}


def peak_memory_gib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# --------------------------------------------------------------------------------------------- workers


def run_trl(args: argparse.Namespace, tmp: Path, settings: dict[str, Any] | None = None,
            end_to_end: bool = False) -> dict[str, Any]:
    """TRL's DPOTrainer on the benchmark's pairs. ``settings``: DPOConfig fields on top of the matched ones
    (default ``--trl-no-checkpointing``'s). ``end_to_end``: TRL's own checkpoint schedule, the final weights
    saved, and the reference precompute timed apart."""
    import datasets
    from torch.utils.data import SequentialSampler
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    class Trainer(DPOTrainer):
        """TRL as it ships, fed the same token ids in the same order as duelist."""

        def _prepare_dataset(self, dataset, *a, **k):  # already tokenized
            return dataset

        def _get_train_sampler(self, *a, **k):
            return SequentialSampler(self.train_dataset)

        def _precompute_ref_logps(self, *a, **k):
            t = time.perf_counter()
            out = super()._precompute_ref_logps(*a, **k)
            precompute.append(time.perf_counter() - t)
            return out

    precompute: list[float] = []
    cuda = args.device == "cuda"
    if args.trl_keep_freed_memory and not cuda:
        from duelist.train.host import keep_freed_memory

        keep_freed_memory()
    path = model_dir(args, tmp.parent if end_to_end else tmp)  # end to end: the driver's copy
    if path == "default":
        model, tok = load(args)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=random_dtype(args.device)).to(args.device)
        tok = synthetic_tokenizer(RANDOM_MODELS[args.model]["vocab_size"])
    pairs = make_pairs(args, tok, args.batch * args.steps)
    cfg = DPOConfig(
        output_dir=str(tmp / "trl"), per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
        learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, max_steps=args.steps, beta=BETA,
        loss_type=["sigmoid"], max_grad_norm=1.0, weight_decay=0.0, logging_steps=1, report_to=[],
        bf16=cuda or args.mixed_bf16, use_cpu=not cuda, max_length=None, seed=SEED, data_seed=SEED,
        dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True,
        **({} if end_to_end else {"save_strategy": "no"}),
        **(settings if settings is not None else
           {"gradient_checkpointing": False} if args.trl_no_checkpointing else {}),
    )
    clock = step_clock()
    trainer = Trainer(model=model, args=cfg, train_dataset=datasets.Dataset.from_list(pairs),
                      processing_class=tok, callbacks=[clock])
    trainer.train()
    if end_to_end:
        trainer.save_model(str(tmp / "trl-final"))
    tokens = [sum(2 * len(p["prompt_ids"]) + len(p["chosen_ids"]) + len(p["rejected_ids"])
                  for p in pairs[s * args.batch : (s + 1) * args.batch]) for s in range(args.steps)]
    return {"times": clock.times, "tokens": tokens, "losses": clock.losses, "peak_gib": peak_memory_gib(),
            "params": sum(p.numel() for p in model.parameters()), "precompute_s": sum(precompute),
            "settings": {k: getattr(cfg, k) for k in ("gradient_checkpointing", "precompute_ref_log_probs", "bf16",
                                                      "torch_compile")}, **param_split(model),
            **token_counts(pairs)}


def run_duelist(args: argparse.Namespace, tmp: Path, point: str) -> dict[str, Any]:
    from duelist.config import load_config
    from duelist.data.tokenize import TokenizedPair
    from duelist.models.load import load_tokenizer
    from duelist.train.run import Run

    path = model_dir(args, tmp)
    cfg = load_config(None, [
        f"model.name={path}", f"train.output_dir={tmp / ('duelist-' + point)}", f"train.steps={args.steps}",
        f"train.batch_size={args.batch}", f"loss.beta={BETA}", f"optim.lr={LR}", "optim.warmup=0",
        "optim.schedule=constant", "optim.max_grad_norm=1.0", "optim.weight_decay=0", "data.shuffle=false",
        f"train.seed={SEED}", "train.progress=false", "train.tensorboard=false", "train.save_final=false",
        f"model.dtype={'bfloat16' if args.device == 'cuda' else 'float32'}", *point_overrides(args, point),
        *(["train.mixed_precision=bf16"] if args.mixed_bf16 else []),
    ])
    pairs = [TokenizedPair(p["prompt_ids"], p["chosen_ids"], p["rejected_ids"])
             for p in make_pairs(args, load_tokenizer(cfg.model), args.batch * args.steps)]
    trainer = Run(cfg, pairs=pairs)
    times, tokens, losses = [], [], []
    for step in range(args.steps):
        t0 = time.perf_counter()
        m = trainer.step(step)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        tokens.append(m["tokens"])
        losses.append(m["loss"])
    return {"times": times, "tokens": tokens, "losses": losses, "peak_gib": peak_memory_gib(),
            "params": sum(p.numel() for p in trainer.learner.model.parameters())}


# ---------------------------------------------------------------------------------------------- driver


# dense bf16 peak (TFLOP/s) by device name, first match wins; --peak-tflops for anything else
BF16_PEAK_TFLOPS = [("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4), ("GH200", 989.4),
                    ("A100", 312.0), ("L40S", 362.1), ("A10G", 70.0)]


def device_peak_tflops(device: str, given: float | None) -> float | None:
    if given is not None:
        return given
    return next((peak for key, peak in BF16_PEAK_TFLOPS if key in device), None)


def summarise(r: dict[str, Any], warmup: int, peak_tflops: float | None) -> dict[str, Any]:
    rates = [t / dt for t, dt in zip(r["tokens"][warmup:], r["times"][warmup:], strict=True)]
    out = {"tokens_per_s": statistics.median(rates), "peak_gib": r["peak_gib"], "losses": r["losses"][:LOSS_STEPS],
           "params": r["params"]}
    # 6N accounting: 6 FLOPs per parameter per token (forward 2, backward 4), attention not counted
    out["mfu"] = 6 * r["params"] * out["tokens_per_s"] / (peak_tflops * 1e12) if peak_tflops else None
    return out


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", choices=["default", *RANDOM_MODELS], default="default")
    ap.add_argument("--data", choices=["fixed", "hh"], default="fixed")
    ap.add_argument("--seq-len", type=int, default=144, help="fixed: tokens per sequence; hh: max length")
    ap.add_argument("--batch", type=int, default=8, help="pairs per step")
    ap.add_argument("--steps", type=int, help="steps per run (default 8; end to end 30)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--trl-no-checkpointing", action="store_true",
                    help="turn off TRL's default gradient checkpointing (faster, more memory)")
    ap.add_argument("--trl-keep-freed-memory", action="store_true",
                    help="give TRL's process the glibc setting duelist applies to itself on CPU "
                    "(train.keep_freed_memory): no page faults after the first steps")
    ap.add_argument("--mixed-bf16", action="store_true",
                    help="CPU: both systems in bf16 mixed precision (float32 weights, gradients and AdamW; matmuls "
                    "under bfloat16 autocast): TRL's shipped default (bf16=True), which the default run turns off")
    ap.add_argument("--rounds", type=int, default=1, help="run all systems this many times, alternating; "
                    "ratios are taken within each round and their median reported")
    ap.add_argument("--out", type=Path, help="also write the results JSON here")
    ap.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, for the 6N utilisation "
                    "(known GPUs are looked up by name)")
    ap.add_argument("--end-to-end", action="store_true", help="whole runs, each timed from its process's start "
                    "to its final weights on disk; duelist at its default settings, TRL at its defaults and at its "
                    "best (vs_trl_e2e.py)")
    ap.add_argument("--trl-best", default="probe", choices=["probe", *vs_trl_e2e.TRL_CANDIDATES],
                    help="end to end: TRL's best setting, or 'probe' (default) to choose it by a short run of each")
    ap.add_argument("--probe-steps", type=int, default=3, help="end to end: steps of each TRL probe run")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.steps is None:
        args.steps = vs_trl_e2e.E2E_STEPS if args.end_to_end else 8

    if args.worker:  # one system, in its own process: print its raw result as the last line
        if args.worker.startswith("e2e:"):
            res = vs_trl_e2e.worker(args, args.worker.removeprefix("e2e:"))
        else:
            res = run_trl(args, args.tmp) if args.worker == "trl" else run_duelist(args, args.tmp, args.worker)
        print(json.dumps(res))
        return
    if args.end_to_end:
        summary = vs_trl_e2e.main(args, argv)
        if args.out:
            args.out.write_text(json.dumps(summary, indent=1))
        print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}))
        return

    systems = ["trl", *POINTS[args.device]]
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    peak = device_peak_tflops(device, args.peak_tflops)
    rounds: list[dict[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.rounds):  # systems alternate, so slow drifts of a shared machine hit all of them
            results: dict[str, dict[str, Any]] = {}
            for name in systems:
                cmd = [sys.executable, __file__, *argv, "--worker", name, "--tmp", tmp]
                t0 = time.perf_counter()
                out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
                if out.returncode:
                    sys.exit(f"{name} failed:\n{out.stderr[-4000:]}")
                r = results[name] = summarise(json.loads(out.stdout.strip().splitlines()[-1]), args.warmup, peak)
                mfu = f", {100 * r['mfu']:.1f}% of bf16 peak (6N)" if r["mfu"] is not None else ""
                print(f"{name:>8}{f' (round {k + 1})' if args.rounds > 1 else ''}: {r['tokens_per_s']:9.1f} tokens/s"
                      f"{mfu}, peak {r['peak_gib']:.2f} GiB, losses {', '.join(f'{x:.6f}' for x in r['losses'])} "
                      f"({time.perf_counter() - t0:.0f}s)", flush=True)
            rounds.append(results)
    summary: dict[str, Any] = {"device": device, "peak_tflops": peak, "model": args.model, "data": args.data,
                               "seq_len": args.seq_len, "batch": args.batch, "steps": args.steps,
                               "trl_checkpointing": not args.trl_no_checkpointing,
                               "trl_keep_freed_memory": args.trl_keep_freed_memory,
                               "precision": precision(args), "rounds": rounds}
    matches = []
    for point in POINTS[args.device]:
        # ratios within each round, then the median over rounds
        speed = [r[point]["tokens_per_s"] / r["trl"]["tokens_per_s"] for r in rounds]
        memory = [r[point]["peak_gib"] / r["trl"]["peak_gib"] for r in rounds]
        diff = max(abs(a - b) for r in rounds for a, b in zip(r[point]["losses"], r["trl"]["losses"], strict=True))
        matches.append(diff <= 1e-3)
        summary[f"{point}_speedup"] = statistics.median(speed)
        summary[f"{point}_memory_ratio"] = statistics.median(memory)
        summary[f"{point}_loss_max_diff"] = diff
        if args.rounds > 1:
            summary[f"{point}_speedup_rounds"] = speed
        each = f" (median of rounds: {', '.join(f'{x:.2f}x' for x in speed)})" if args.rounds > 1 else ""
        print(f"{point} point: {summary[f'{point}_speedup']:.2f}x TRL tokens/s at "
              f"{summary[f'{point}_memory_ratio']:.2f}x its peak memory{each}; "
              f"first-step losses differ by ≤ {diff:.2e}")
    summary["speed_mfu"] = statistics.median(  # None where the device's peak is unknown (CPU)
        [r["speed"]["mfu"] for r in rounds]) if peak else None
    summary["speedup"] = summary["speed_speedup"]
    summary["memory_ratio"] = summary["speed_memory_ratio"]
    summary["loss_match"] = all(matches)
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}))


if __name__ == "__main__":
    main(sys.argv[1:])
