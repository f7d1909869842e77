"""Frames and ground truth (stage 0): benchmark layouts, the built-in synthetic set, temporal context.

The benchmarks themselves come from their official archives: `python -m utils.datasets fetch|prepare`
(utils/datasets/prepare.py, docs/datasets.md)."""
from utils.datasets.layouts import FRAME_EXTENSIONS, open_split
from utils.datasets.split import VideoSplit, context_range, read_image
from utils.datasets.synthetic import generate as generate_synthetic
from utils.datasets.synthetic import is_current as synthetic_is_current

__all__ = ["VideoSplit", "open_split", "context_range", "read_image", "generate_synthetic", "synthetic_is_current", "FRAME_EXTENSIONS"]
