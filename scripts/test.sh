#!/usr/bin/env bash
# Install and run the test suite (plus the linter). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ruff check src tests benchmarks
python -m pytest "$@"
