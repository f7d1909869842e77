"""The synthetic inputs the benchmark rows run on: frames, videos, box lists and cube stores of
the benchmark datasets' sizes, so that no dataset is needed.

DATASETS is the one table of the datasets' frame sizes and the statistics of the boxes the
reference finds in them. Box statistics of the reference code's box files
(obj_det_with_motion, the test split: UCSDped2_bboxes_test_obj_det_with_motion.npy, 2010
frames, and avenue_bboxes_test_obj_det_with_motion.npy, 15324 frames), measured once and
written here because the benchmarks run where those files are not: boxes per frame (mean,
sd), natural log of box width and height in pixels (mean, sd). (Train splits: UCSDped2
12.2 ± 5.2 boxes per frame, 14.0 x 29.5 px mean; Avenue 7.9 ± 4.1, 34.7 x 112.9 px.)
ShanghaiTech (no reference box file at hand): Avenue's boxes per frame and Avenue's box
sizes scaled by 480/360 (both are street-level views of pedestrians).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from utils.datasets.split import VideoSplit
from utils.fingerprints import CubeSpec
from utils.infra.io import preallocated_npy

DATASETS = {
    # name: frame (H, W), file type, grey, boxes per frame, log width, log height, BoxParams of config.cfg
    "UCSDped2": {"size": (240, 360), "ext": ".tif", "grey": True, "count": (17.27, 5.06),
                 "log_w": (2.660, 0.340), "log_h": (3.350, 0.258),  # mean 15.2 x 29.4 px
                 "box_params": {"score_thr": 0.5, "min_area": 100, "cover_thr": 0.6, "area_thr": 100,
                                "binary_thr": 18, "extend": 2, "blur_size": 3}},
    "avenue": {"size": (360, 640), "ext": ".jpg", "grey": False, "count": (6.81, 2.78),
               "log_w": (3.591, 0.417), "log_h": (4.706, 0.292),  # mean 40.0 x 115.9 px
               "box_params": {"score_thr": 0.25, "min_area": 1600, "cover_thr": 0.6, "area_thr": 1600,
                              "binary_thr": 18, "extend": 2, "blur_size": 5}},
    "ShanghaiTech": {"size": (480, 856), "ext": ".jpg", "grey": False, "count": (6.81, 2.78),
                     "log_w": (3.591 + 0.288, 0.417), "log_h": (4.706 + 0.288, 0.292),
                     "box_params": {"score_thr": 0.5, "min_area": 64, "cover_thr": 0.65, "area_thr": 64,
                                    "binary_thr": 15, "extend": 2, "blur_size": 5}},
}
SIZES = {name: stats["size"] for name, stats in DATASETS.items()}
# The videos of the cube and end-to-end rows: the datasets whose box statistics were measured.
PIPELINE_VIDEOS = ("UCSDped2", "avenue")
CUBE_SPEC = CubeSpec(patch_size=32, context_frame_num=4, context_of_num=4, border_mode="predict", motion_thr=0.0,
                     h_block=1, w_block=1, block_mode=1, flow_method="dis")  # the paper's cubes (config.cfg)


def sample_boxes(stats: dict, n_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Per frame (n, 4) float boxes x1, y1, x2, y2 inside the frame: counts ~ normal (at least 1),
    widths and heights ~ log-normal (clipped to 4 px .. the frame), positions uniform."""
    height, width = stats["size"]
    counts = np.maximum(1, np.rint(rng.normal(*stats["count"], n_frames))).astype(int)
    frames = []
    for count in counts:
        w = np.clip(np.exp(rng.normal(*stats["log_w"], count)), 4, width - 1)
        h = np.clip(np.exp(rng.normal(*stats["log_h"], count)), 4, height - 1)
        x1, y1 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        frames.append(np.round(np.stack([x1, y1, x1 + w, y1 + h], 1), 1))
    return frames


def blob_frames(name: str, n_frames: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Frames (H, W, 3) uint8 BGR of a synthetic video of the size of dataset `name`: a textured
    background and as many textured blobs of the reference's box sizes as it has boxes per frame.
    The blobs move along horizontal lanes (one speed of 1.5-4 px per frame and direction per lane,
    spaced evenly, wrapping round at the borders), so that the motion cue finds about one box per
    blob rather than merging neighbours. A grey dataset's frames are grey in all three channels."""
    stats = DATASETS[name]
    height, width = stats["size"]
    channels = 1 if stats["grey"] else 3
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.normal(0, 20, (height, width, channels)), (0, 0), 3).reshape(height, width, -1)
    background = background + 128 + rng.uniform(-25, 25, (1, 1, channels))
    n_blobs = int(round(stats["count"][0]))
    tall = float(np.exp(stats["log_h"][0] + 1.3 * stats["log_h"][1]))  # about the 90th percentile of heights
    lane_h = int(tall) + 12  # the gap keeps blurred, extended motion boxes of neighbouring lanes apart
    n_lanes = max(1, height // lane_h)
    blobs = []
    for lane in range(n_lanes):
        members = range(lane, n_blobs, n_lanes)
        velocity = rng.uniform(1.5, 4) * rng.choice([-1, 1])
        for k, _ in enumerate(members):
            w = int(np.clip(np.exp(rng.normal(*stats["log_w"])), 6, width // (2 * len(members))))
            h = int(np.clip(np.exp(rng.normal(*stats["log_h"])), 6, lane_h - 12))
            yy, xx = np.mgrid[:h, :w]
            shape = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2 <= 1
            grain = stats["box_params"]["blur_size"]  # texture in cells that the motion cue's blur keeps
            texture = rng.uniform(-50, 50, (h // grain + 1, w // grain + 1, channels))
            texture = rng.uniform(-60, -20, (1, 1, channels)) + np.kron(texture, np.ones((grain, grain, 1)))[:h, :w]
            x = (k + rng.uniform(0, 0.3)) * width / len(members)
            y = lane * lane_h + 6 + rng.integers(0, lane_h - 12 - h + 1)
            blobs.append((shape, texture, x, int(y), velocity))
    for t in range(n_frames):
        frame = background.copy()
        for shape, texture, x, y, velocity in blobs:
            h, w = shape.shape
            columns = (int(x + velocity * t) + np.arange(w)) % width
            region = frame[y:y + h, columns]
            region[shape] = 0.3 * region[shape] + 0.7 * (128 + texture[shape])
            frame[y:y + h, columns] = region
        frame = np.clip(frame + rng.normal(0, 1.5, frame.shape), 0, 255).astype(np.uint8)
        yield np.repeat(frame, 3, axis=2) if channels == 1 else frame


def write_blob_video(folder: Path, name: str, n_frames: int, seed: int = 0) -> VideoSplit:
    """blob_frames written as a test video `folder/Test001` in the dataset's file type; its VideoSplit."""
    video = folder / "Test001"
    video.mkdir(parents=True)
    paths = []
    for t, frame in enumerate(blob_frames(name, n_frames, seed)):
        paths.append(video / f"{t + 1:03d}{DATASETS[name]['ext']}")
        cv2.imwrite(str(paths[-1]), frame)
    return VideoSplit(folder, "test", paths, np.ones(n_frames, dtype=np.int64), ["Test001"])


def store_bytes(count: int) -> int:
    """Disk space of a cube store of `count` cubes (the paper's cube settings)."""
    p, t = CUBE_SPEC.patch_size, CUBE_SPEC.frames_per_cube
    return count * (t * 3 * p * p + 4 * t * 2 * p * p + 64)


def write_synthetic_store(directory: Path, count: int, seed: int = 0, chunk: int = 2048) -> None:
    """A CubeStore of `count` cubes in its on-disk format (utils/cubes.py), ShanghaiTech-sized
    frames and boxes, every cube in block (0, 0). The raw and flow rows repeat one random chunk:
    what is measured with it is memory, not what the networks learn. Dropped from the page cache
    when written, as a store made earlier would be."""
    stats = DATASETS["ShanghaiTech"]
    rng = np.random.default_rng(seed)
    frames, total = [], 0
    while total < count:
        frames += sample_boxes(stats, 1000, rng)
        total = sum(len(f) for f in frames)
    frame_index = np.concatenate([np.full(len(f), i, dtype=np.int64) for i, f in enumerate(frames)])[:count]
    boxes = np.concatenate(frames)[:count]
    n_frames = int(frame_index[-1]) + 1
    p, t = CUBE_SPEC.patch_size, CUBE_SPEC.frames_per_cube
    directory.mkdir(parents=True)
    chunks = {"raw.npy": rng.integers(0, 256, (chunk, t, 3, p, p), dtype=np.uint8),
              "flow.npy": rng.normal(0, 2, (chunk, t, 2, p, p)).astype(np.float32)}
    for name, rows in chunks.items():
        preallocated_npy(directory / name, rows.dtype, (count, *rows.shape[1:]))  # header, blocks reserved
        row_bytes = rows[0].nbytes
        with open(directory / name, "r+b") as f:  # written, not mapped: this process's RSS stays small
            f.seek(os.fstat(f.fileno()).st_size - count * row_bytes)
            for start in range(0, count, chunk):
                f.write(rows[:min(chunk, count - start)].tobytes())
            os.fsync(f.fileno())  # clean pages, which the page-cache drop below can let go
    np.savez(directory / "index.npz", frame_index=frame_index, boxes=boxes.astype(np.float64),
             blocks=np.zeros((count, 2), dtype=np.int64))
    (directory / "meta.json").write_text(json.dumps({"count": count, "n_frames": n_frames,
                                                     "frame_size": list(stats["size"]),
                                                     "settings": {"synthetic": True}}))
    if hasattr(os, "posix_fadvise"):  # out of the page cache (written and flushed: clean)
        for name in ("raw.npy", "flow.npy"):
            fd = os.open(directory / name, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
