"""``python -m yolo11_lightning {fit,validate,test,predict} ...``: the same command line as ``train.py``."""

from yolo11_lightning.training.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
