#!/usr/bin/env bash
# duelist vs TRL on one GPU with no network: a 1.7B Llama-style random-init model (SmolLM2-1.7B's shape),
# 8 pairs x 1024 tokens, bf16. Per step (benchmarks/results-gpu.json, device name included), then end to end:
# 30 steps, each system's process timed from its start to its final weights on disk, duelist at its defaults
# against TRL at its shipped defaults and at its best setting (chosen by a 3-step probe of each candidate), with
# each system's FLOP floor at the bf16 matmul rate measured in the same run (benchmarks/results-gpu-e2e.json).
#
# The GPU machine lacks some Python packages; carry them as wheels in benchmarks/wheels/ (not committed):
#   bash benchmarks/gpu.sh --fetch     # once, on a machine where pip reaches PyPI (Python 3.12, x86-64)
#   bash benchmarks/gpu.sh             # on the GPU machine (needs torch, transformers, accelerate there): both
#   bash benchmarks/gpu.sh --per-step  # or only one of the two (each fits in under 10 minutes)
#   bash benchmarks/gpu.sh --end-to-end
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=benchmarks/wheels
NEEDED="trl==1.16.0 datasets==5.2.0 dill==0.4.0 multiprocess==0.70.18 pydantic==2.14.4 pydantic-core==2.50.5
annotated-types==0.7.0 typing-inspection==0.4.5 typing-extensions==4.16.0 psutil==7.2.2"
if [ "${1:-}" = "--fetch" ]; then
  mkdir -p "$WHEELS"
  # shellcheck disable=SC2086
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WHEELS" $NEEDED
  exit 0
fi
SITE=/tmp/duelist-bench-site
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$WHEELS"/*.whl
export PYTHONPATH="$SITE:$PWD/src" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
MODE="${1:-both}"
[ "$MODE" = --end-to-end ] || timeout 360 python3 benchmarks/vs_trl.py --device cuda --model llama-1.7b --seq-len 1024 --batch 8 \
  --steps 10 --warmup 4 --out benchmarks/results-gpu.json
[ "$MODE" = --per-step ] || timeout 540 python3 benchmarks/vs_trl.py --end-to-end --device cuda --model llama-1.7b \
  --seq-len 1024 --batch 8 --steps 30 --rounds 1 --probe-steps 3 --out benchmarks/results-gpu-e2e.json
