#!/usr/bin/env bash
# Create .venv (if missing) and install the package with the pinned, tested versions.
# Usage: bash scripts/setup_env.sh [extras]   (default extras: test,reference)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test,reference}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q -c constraints.txt -e ".[${extras}]"
.venv/bin/python -c "import yolo11_lightning, torch, lightning; print('env ok: torch', torch.__version__, 'lightning', lightning.__version__)"
