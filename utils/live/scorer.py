"""One frame's score from its window of stream frames: flow → boxes → cubes → cloze scores.

The stages are the offline pipeline's own functions, called on one frame instead of a
split, with the configured dataset's settings:

    flow    the backend of `flow_method` on the frame pairs of `flow_pair` (docs/method.md §2)
    boxes   `frame_boxes` on frames i-1, i, i+1 (and the detector's detections of i)      (§3)
    cubes   `frame_cubes` of the raw and flow context (crops, the motion filter, the blocks)
            exactly as `utils.cubes.build_cubes` does for each frame                       (§4)
    scores  `utils.scoring.block_scores` with each block's network built once (what
            `score_cubes` does offline); the frame's score is `frame_scores`'              (§7)

so a frame scored here gets the score `test.py --video` gives it on the same frames (its
context inside one segment; tests/test_live.py compares the two). The networks are built
once; flows are kept for the next frames' windows, which share all but one of them.
"""
from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from utils.config import RunConfig
from utils.cubes import CubeStore, frame_cubes
from utils.fingerprints import CubeSpec
from utils.flow import FlowBackend
from utils.foreground import MODES_WITH_DETECTOR, frame_boxes
from utils.live.context import Segment, frames_needed
from utils.live.ring import Arrival, Target
from utils.scoring import NO_BOX_SCORE, block_scores, frame_scores
from utils.stages import detector_for, flow_backend_for
from utils.trained_model import TrainedBlocks, block_networks

FLOW_CACHE = 12  # flows kept for the next windows (a window holds 5)
# A frame's cloze work is a few cubes: a second intra-op thread gains little on it and competes with the
# reader's decoding and the flow. On the 2-core development machine, busy: nf 8 took 50 ms a frame for the
# boxes, cubes and networks with one thread, 240-320 ms with two (benchmarks/live.py prints the split).
LIVE_CPU_THREADS = 1


@dataclass
class FrameResult:
    score: float  # the frame score (NO_BOX_SCORE: no cube)
    boxes: np.ndarray  # (N, 4) the boxes of the frame's scored cubes
    cube_scores: np.ndarray  # (N,)
    flows: int  # flows computed for this frame (the rest came from earlier windows)
    flow_seconds: float
    other_seconds: float  # boxes, cubes and networks


class FrameScorer:
    """Scores `Target`s (utils/live/ring.py) with a trained model; `flow_backend` and `detector` as the
    pipeline builds them (`from_config`), or given (benchmarks pass stand-in networks)."""

    def __init__(self, cfg: RunConfig, trained: TrainedBlocks, device: str, flow_backend: FlowBackend,
                 detector=None) -> None:
        self.cloze, self.dataset, self.device = cfg.cloze, cfg.dataset, device
        self.cube_spec = CubeSpec.of(cfg, "test")
        self.mode = cfg.foreground_extraction_mode
        self.flow_backend, self.detector = flow_backend, detector
        self.detect = detector is not None and self.mode in MODES_WITH_DETECTOR
        self.trained, self.networks = trained, block_networks(trained, self.cloze, device)
        self._flows: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    @classmethod
    def from_config(cls, cfg: RunConfig, trained: TrainedBlocks, device: str) -> "FrameScorer":
        detector = (detector_for(cfg.dataset, device, batch_size=1)
                    if cfg.foreground_extraction_mode in MODES_WITH_DETECTOR else None)
        backend = flow_backend_for(cfg.dataset, device)
        return cls(cfg, trained, device, backend, detector)

    def score(self, target: Target) -> FrameResult:
        started = time.perf_counter()
        arrival = target.arrival
        segment, t = Segment(target.length), arrival.index
        needed = frames_needed(segment, t, self.cloze)
        frames = target.frames
        context = np.stack([frames[j].frame for j in needed["boxes"]])
        detections = self.detector([arrival.frame])[0] if self.detect else None
        boxes = np.asarray(frame_boxes(self.mode, context, detections, self.dataset.boxes)).reshape(-1, 4)
        flows, flow_seconds = 0, 0.0
        if len(boxes) == 0:  # as build_cubes: a frame without boxes has no cubes
            return FrameResult(NO_BOX_SCORE, boxes, np.zeros(0), 0, 0.0, time.perf_counter() - started)
        flow_context = []
        for j, pair in zip(needed["flow"], needed["pairs"]):
            key = (arrival.segment, j)
            if key not in self._flows:
                flow_started = time.perf_counter()
                first, second = (frames[p].frame[None] for p in pair)
                self._flows[key] = np.ascontiguousarray(self.flow_backend(first, second)[0], dtype=np.float32)
                flows, flow_seconds = flows + 1, flow_seconds + time.perf_counter() - flow_started
                while len(self._flows) > FLOW_CACHE:
                    self._flows.popitem(last=False)
            flow_context.append(self._flows[key])
        cubes = self._cubes([frames[j].frame for j in needed["raw"]], flow_context, boxes, arrival.frame.shape[:2])
        cube_scores = block_scores(cubes, self.networks, self.trained, self.cloze, self.device, cuda_graphs=False)
        score = float(frame_scores(1, arrival.frame.shape[:2], cubes.frame_index, cubes.boxes, cube_scores)[0])
        return FrameResult(score, cubes.boxes, cube_scores, flows, flow_seconds,
                           time.perf_counter() - started - flow_seconds)

    def _cubes(self, raw_frames: list[np.ndarray], flows: list[np.ndarray], boxes: np.ndarray,
               frame_size: tuple[int, int]) -> CubeStore:
        """The frame's cubes as `build_cubes` keeps them (moving ones, one row per block), in memory."""
        raw_cubes, flow_cubes, rows, blocks = frame_cubes(raw_frames, flows, boxes, self.cube_spec, frame_size)
        rows = np.asarray(rows, dtype=np.int64)
        return CubeStore(None, raw_cubes[rows], flow_cubes[rows], np.zeros(len(rows), dtype=np.int64),
                         boxes[rows].astype(np.float64), np.asarray(blocks, dtype=np.int64).reshape(-1, 2), 1)

    def warm_up(self, height: int = 240, width: int = 320) -> None:
        """Score one made-up frame (a square moving over noise), so the first real frame does not pay
        for the networks' first run; its flows are forgotten."""
        rng = np.random.default_rng(0)
        background = rng.integers(90, 160, (height, width, 3), dtype=np.uint8)
        frames = {}
        for j in range(3):
            frame = background.copy()
            frame[height // 3:height // 3 + 40, 20 + 12 * j:60 + 12 * j] = 230
            frames[j] = Arrival(-1, j, j, 0.0, frame)
        self.score(Target(frames[1], frames, 3))
        self._flows.clear()


@contextlib.contextmanager
def live_threads(device: str):
    """Torch's intra-op threads set to LIVE_CPU_THREADS for a live run on the CPU, and put back after."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(LIVE_CPU_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)
