"""Tokens/s and peak memory of a duelist training step (a benchmark, not a test).

Default: the embedded SmolLM2-135M-Instruct, DPO, batch 8 pairs, every sequence exactly 256 tokens
(128 prompt + 128 response tokens, random ids), reference precomputed. Prints the median tokens/s over
the steps after warm-up and the process's peak memory (RSS on CPU, max allocated on GPU).

    python benchmarks/train_step.py                       # defaults
    python benchmarks/train_step.py --steps 6 train.logprob_chunk=256 model.gradient_checkpointing=true
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--response-len", type=int, default=128)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)

    from duelist.config import load_config
    from duelist.data.tokenize import TokenizedPair
    from duelist.models.load import load_tokenizer
    from duelist.train.run import Run

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = load_config(None, [
            "model.name=default", "data.train=positive-review", f"train.output_dir={tmp / 'run'}",
            f"train.steps={args.steps}", "train.batch_size=8", "train.progress=false", "train.tensorboard=false",
            "train.save_final=false", f"data.max_length={args.prompt_len + args.response_len}",
            f"data.max_prompt_length={args.prompt_len}", *args.overrides,
        ])
        # fixed-length random token pairs instead of the task's
        g = torch.Generator().manual_seed(0)
        vocab = len(load_tokenizer(cfg.model))
        def rand(k: int) -> list[int]:
            return torch.randint(1000, vocab - 1000, (k,), generator=g).tolist()
        pairs = [TokenizedPair(rand(args.prompt_len), rand(args.response_len), rand(args.response_len))
                 for _ in range(8 * args.steps)]
        trainer = Run(cfg, pairs=pairs)
        times, tokens = [], []
        for step in range(args.steps):
            t0 = time.perf_counter()
            m = trainer.step(step)
            times.append(time.perf_counter() - t0)
            tokens.append(m["tokens"])
        steady = [t / dt for t, dt in zip(tokens[args.warmup :], times[args.warmup :], strict=True)]
        if torch.cuda.is_available():
            peak = torch.cuda.max_memory_allocated() / 2**30
            where = f"GPU max allocated ({torch.cuda.get_device_name()})"
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            where = f"CPU peak RSS ({torch.get_num_threads()} threads)"
        print(f"batch 8 pairs x {args.prompt_len + args.response_len} tokens per sequence, {args.steps} steps "
              f"({args.warmup} warm-up)")
        print(f"tokens/s (median after warm-up): {statistics.median(steady):.1f}")
        print(f"{where}: {peak:.2f} GiB")
        print(json.dumps({"tokens_per_s": statistics.median(steady), "peak_gib": peak}))


if __name__ == "__main__":
    main(sys.argv[1:])
