#!/usr/bin/env bash
# The main job: install, then train YOLO11n from scratch on the shipped data set (CPU, a few minutes);
# the last line printed is the final validation mAP.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test
exec .venv/bin/python train.py fit --config configs/quickstart.yaml "$@"
