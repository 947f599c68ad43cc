#!/usr/bin/env bash
# Install (pinned versions, reference included for the parity tests) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test,reference
# pytest exits 5 when it collected no test: that fails this script like any other failure.
exec .venv/bin/python -m pytest -q "$@"
