#!/usr/bin/env bash
# The main job: install, train DPO on the built-in positive-review task with the embedded
# SmolLM2-135M-Instruct, then evaluate it against its reference. Extra arguments are config overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
duelist train positive-review --overwrite "$@"
duelist eval positive-review "$@"
