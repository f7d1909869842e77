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

import cv2
import numpy as np
import torch

from models.stacked_cloze import Execution, Prepacked, Threads
from utils.config import ClozeConfig, RunConfig
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
# The stages already run side by side on threads of their own (the reader, the preparing thread, the
# networks' workers): torch's and OpenCV's own thread pools would only compete with them.
LIVE_CPU_THREADS = 1
# A frame's cubes go through the networks in this many shares at once, each on a worker thread: while
# the preparing thread works on the next frame they share one core, and when it waits they use both.
LIVE_NETWORK_WORKERS = 2


def live_execution(cloze: ClozeConfig, device: str) -> Execution | None:
    """How the cloze networks run live on a CPU, a frame's few cubes at a time, on LIVE_NETWORK_WORKERS
    threads. Small networks (nf ≤ 16): frozen for inference (BatchNorm folded, ReLU fused, weights
    prepacked; models/stacked_cloze/prepacked.py), the cubes shared out over the workers; their
    convolutions are too small to keep a core busy one U-Net at a time. Larger ones: one U-Net per
    worker (nf 32, 7 cubes, two threads: 147 ms prepacked against 137 ms). Elsewhere the network's
    default. Live figures on the 2-core CPU, street clip: docs/performance.md."""
    if torch.device(device).type != "cpu":
        return None
    return Prepacked(workers=LIVE_NETWORK_WORKERS) if cloze.nf <= 16 else Threads(workers=LIVE_NETWORK_WORKERS)


@dataclass
class PreparedFrame:
    """A frame to score up to its networks (`FrameScorer.prepare`): its boxes and cubes."""

    arrival: Arrival
    boxes: np.ndarray  # (N, 4) every box of the frame
    cubes: CubeStore | None  # the moving ones, as build_cubes keeps them; None for a frame without a box
    flows: int  # flows computed for this frame (the rest came from earlier windows)
    flow_seconds: float
    boxes_seconds: float
    cubes_seconds: float

    @property
    def prepare_seconds(self) -> float:
        """Boxes and cubes (the flows apart)."""
        return self.boxes_seconds + self.cubes_seconds


@dataclass
class FrameResult:
    score: float  # the frame score (NO_BOX_SCORE: no cube)
    boxes: np.ndarray  # (N, 4) the boxes of the frame's scored cubes
    cube_scores: np.ndarray  # (N,)
    flows: int  # flows computed for this frame (the rest came from earlier windows)
    flow_seconds: float
    other_seconds: float  # boxes, cubes and networks
    network_seconds: float = 0.0  # of which the networks


class FrameScorer:
    """Scores `Target`s (utils/live/ring.py) with a trained model; `flow_backend` and `detector` as the
    pipeline builds them (`from_config`), or given (benchmarks pass stand-in networks). `execution`:
    how the cloze networks run (default `live_execution`)."""

    def __init__(self, cfg: RunConfig, trained: TrainedBlocks, device: str, flow_backend: FlowBackend,
                 detector=None, execution: Execution | None = None) -> None:
        self.cloze, self.dataset, self.device = cfg.cloze, cfg.dataset, device
        self.cube_spec = CubeSpec.of(cfg, "test")
        self.mode = cfg.foreground_extraction_mode
        self.flow_backend, self.detector = flow_backend, detector
        self.detect = detector is not None and self.mode in MODES_WITH_DETECTOR
        self.trained = trained
        self.networks = block_networks(trained, self.cloze, device, execution=execution or live_execution(self.cloze, device))
        self._flows: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    @classmethod
    def from_config(cls, cfg: RunConfig, trained: TrainedBlocks, device: str,
                    execution: Execution | None = None) -> "FrameScorer":
        detector = (detector_for(cfg.dataset, device, batch_size=1)
                    if cfg.foreground_extraction_mode in MODES_WITH_DETECTOR else None)
        backend = flow_backend_for(cfg.dataset, device)
        return cls(cfg, trained, device, backend, detector, execution)

    def score(self, target: Target) -> FrameResult:
        """Frame `target`'s score: `finish(prepare(target))`, one after the other."""
        return self.finish(self.prepare(target))

    def prepare(self, target: Target) -> PreparedFrame:
        """Everything before the networks: the frame's boxes, the flows of its window (those not kept
        from earlier windows) and its cubes. The live run does this for the next frame on a thread of
        its own while `finish` runs the networks on this one."""
        started = time.perf_counter()
        arrival = target.arrival
        segment, t = Segment(target.length), arrival.index
        needed = frames_needed(segment, t, self.cloze)
        frames = target.frames
        context = np.stack([frames[j].frame for j in needed["boxes"]])
        detections = self.detector([arrival.frame])[0] if self.detect else None
        boxes = np.asarray(frame_boxes(self.mode, context, detections, self.dataset.boxes)).reshape(-1, 4)
        boxes_seconds = time.perf_counter() - started
        flows, flow_seconds = 0, 0.0
        if len(boxes) == 0:  # as build_cubes: a frame without boxes has no cubes
            return PreparedFrame(arrival, boxes, None, 0, 0.0, boxes_seconds, 0.0)
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
        cubes_started = time.perf_counter()
        cubes = self._cubes([frames[j].frame for j in needed["raw"]], flow_context, boxes, arrival.frame.shape[:2])
        return PreparedFrame(arrival, boxes, cubes, flows, flow_seconds, boxes_seconds,
                             time.perf_counter() - cubes_started)

    def finish(self, prepared: PreparedFrame) -> FrameResult:
        """The networks on a prepared frame's cubes, and its score."""
        return self.finish_all([prepared])[0]

    def finish_all(self, prepared: list[PreparedFrame]) -> list[FrameResult]:
        """`finish` of several prepared frames with one pass of the networks over all their cubes: a run
        that fell behind catches up, the networks' cost per call shared (each frame's scores are its own
        cubes'; the networks' time is shared out by cubes)."""
        with_cubes = [p for p in prepared if p.cubes is not None]
        scores, seconds = iter(()), 0.0
        if with_cubes:
            started = time.perf_counter()
            counts = [len(p.cubes) for p in with_cubes]
            joined = CubeStore(None, *(np.concatenate([getattr(p.cubes, name) for p in with_cubes])
                                       for name in ("raw", "flow", "frame_index", "boxes", "blocks")), 1)
            scores = iter(np.split(block_scores(joined, self.networks, self.trained, self.cloze, self.device,
                                                cuda_graphs=False), np.cumsum(counts)[:-1]))
            seconds = (time.perf_counter() - started) / max(1, sum(counts))  # per cube
        finished = []
        for frame in prepared:
            if frame.cubes is None:  # no box: nothing to score (as build_cubes keeps no cube for it)
                finished.append(FrameResult(NO_BOX_SCORE, frame.boxes, np.zeros(0), 0, 0.0, frame.prepare_seconds))
                continue
            cubes, cube_scores = frame.cubes, next(scores)
            score = float(frame_scores(1, frame.arrival.frame.shape[:2], cubes.frame_index, cubes.boxes,
                                       cube_scores)[0])
            network_seconds = seconds * len(cube_scores)
            finished.append(FrameResult(score, cubes.boxes, cube_scores, frame.flows, frame.flow_seconds,
                                        frame.prepare_seconds + network_seconds, network_seconds))
        return finished

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
def live_threads(device: str, opencv_threads: int | None = 1):
    """Torch's intra-op threads set to LIVE_CPU_THREADS, and OpenCV's to one, for a live run on the CPU;
    put back after. The stages already run side by side on threads of their own (the reader, the
    preparing thread, the networks' workers): OpenCV's own threads only compete with them (one DIS
    flow of a 768x576 pair took 32 ms with OpenCV's two threads, 25 ms with one, on the 2-core CPU)."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(LIVE_CPU_THREADS)
    if opencv_threads is not None:  # None: OpenCV's own setting (benchmarks/live.py compares)
        cv2.setNumThreads(opencv_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
