#!/usr/bin/env bash
# The main job: install, then train YOLO11n from scratch on the shipped data set (CPU, a few minutes);
# it ends by printing the final validation mAP and the run folder (logs, checkpoints, figures).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test
exec .venv/bin/python train.py fit --config configs/quickstart.yaml "$@"
