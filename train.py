"""Train, validate, test or predict with YOLO11: ``python train.py fit --config configs/quickstart.yaml``."""

from yolo11_lightning.training.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
