"""Studies: train variants x seeds through the CLI and say whether a difference is real.

Run ``python -m yolo11_lightning.study --help``; see ``docs/research.md``.
"""
