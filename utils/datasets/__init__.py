"""Frames and ground truth (stage 0): benchmark layouts, the built-in synthetic set, temporal context."""
from utils.datasets.layouts import FRAME_EXTENSIONS, open_split
from utils.datasets.split import VideoSplit, context_range, read_image
from utils.datasets.synthetic import generate as generate_synthetic

__all__ = ["VideoSplit", "open_split", "context_range", "read_image", "generate_synthetic", "FRAME_EXTENSIONS"]
