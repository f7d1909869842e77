"""Boxes of every frame of a split (docs/method.md §3): computed in batches, or read from a box file."""
from __future__ import annotations

from dataclasses import asdict
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from utils.config import BoxParams
from utils.datasets.split import VideoSplit
from utils.infra.errors import VECError
from utils.foreground.box_files import box_file_path, load_box_file, read_box_settings, save_box_file
from utils.foreground.detectors import Detector
from utils.foreground.frame import MODES_WITH_DETECTOR, frame_boxes
from utils.infra.prefetch import read_ahead
from utils.released import released_file_of


def compute_split_boxes(split: VideoSplit, mode: str, params: BoxParams, detector: Detector | None, *,
                        batch_size: int = 4, progress: bool = True,
                        frames: Sequence[int] | None = None) -> list[np.ndarray]:
    """Boxes of every frame of `split`, or of `frames` only, in their order (each frame decoded
    once; detector run in batches). The next batch's frames are decoded (and, for a detector with
    `prepare`, resized and sent to its device) on a background thread while the detector works on
    this batch (utils/infra/prefetch.py)."""
    boxes: list[np.ndarray] = []
    frames = range(len(split)) if frames is None else frames
    bar = tqdm(total=len(frames), desc=f"boxes ({split.split})", unit="frame", disable=not progress)

    detect = detector is not None and mode in MODES_WITH_DETECTOR
    # A detector that splits its preprocessing off (CascadeRCNNDetector) has it run on the reading thread.
    prepare = getattr(detector, "prepare", None) if detect else None

    def read_context(chunk: list[int], previous: tuple | None) -> tuple[list, dict[int, np.ndarray], object]:
        """The chunk's contexts and their frames (frames the previous chunk read are reused, not decoded
        again), and the detector's prepared input."""
        cache = previous[1] if previous is not None else {}
        contexts = [split.context(i, 1, "hard") for i in chunk]
        needed = sorted({j for c in contexts for j in c})
        decoded = {j: cache[j] if j in cache else split.read_frame(j) for j in needed}
        return contexts, decoded, prepare([decoded[i] for i in chunk]) if prepare is not None else None

    chunks = [[int(i) for i in frames[start:start + batch_size]] for start in range(0, len(frames), batch_size)]
    for chunk, (contexts, cache, prepared) in read_ahead(chunks, read_context):
        detections = [None] * len(chunk)
        if prepare is not None:
            detections = detector.detect_prepared(prepared)
        elif detect:
            detections = detector([cache[i] for i in chunk])
        for context, dets in zip(contexts, detections):
            boxes.append(frame_boxes(mode, np.stack([cache[j] for j in context]), dets, params))
        bar.update(len(chunk))
    bar.close()
    return boxes


def _made_elsewhere(path) -> str:
    """Where a box file without settings comes from: the reference authors' release (by its bytes), or unknown."""
    released = released_file_of(path, kind="boxes")
    if released is None:
        return "made elsewhere: its settings are not known"
    released_set, file = released
    return (f"the box file the reference's authors released, {released_set.name}: Cascade R-CNN + motion, "
            f"git blob SHA-1 {file.blob_sha1[:12]}… verified; no detector is run")


def split_boxes(split: VideoSplit, mode: str, params: BoxParams, *, reuse_saved: bool,
                detector_factory: Callable[[], Detector | None], batch_size: int = 4, progress: bool = True,
                settings: dict | None = None, frames: Sequence[int] | None = None,
                gather: Callable[[list[np.ndarray]], list[list[np.ndarray]]] | None = None,
                save: bool = True) -> list[np.ndarray]:
    """Boxes of a split: the saved box file when present and `reuse_saved`, else computed and saved.

    `detector_factory()` builds the detector only when boxes must be computed, so a user
    with the reference's box files needs no detector weights. `settings` (what made the
    boxes) are saved beside the box file; a saved file made with other settings is not
    reused silently. The reference's own box files carry none and are reused as they are.

    Shared between processes: each computes the boxes of its `frames` (consecutive shares of
    the split), `gather` returns every process's boxes in frame order, and only the process
    with `save` writes the file (the same bytes as one process computing all frames).
    """
    path = box_file_path(split.dataset_dir, split.split, mode)
    settings = {"mode": mode, **asdict(params), **(settings or {})}
    if reuse_saved and path.is_file():
        made_with = read_box_settings(path)
        changed = [f"{key} = {made_with[key]!r} there, {value!r} now" for key, value in settings.items()
                   if made_with is not None and key in made_with and made_with[key] != value]
        if changed:
            raise VECError(f"box file {path} was made with other settings ({'; '.join(changed)}); delete it or set "
                           f"{split.split}_bbox_saved = False to recompute the boxes")
        print(f"boxes: reusing {path}" + ("" if made_with else f" ({_made_elsewhere(path)})"))
        return load_box_file(path, len(split))
    detector = detector_factory() if mode in MODES_WITH_DETECTOR else None
    boxes = compute_split_boxes(split, mode, params, detector, batch_size=batch_size, progress=progress, frames=frames)
    if gather is not None:
        # Unpickled arrays carry copies of their dtype; numpy's own dtype objects make the
        # box file pickle exactly as when one process computed every frame.
        boxes = [frame_boxes.view(np.dtype(frame_boxes.dtype.str)) for part in gather(boxes) for frame_boxes in part]
        if len(boxes) != len(split):
            raise ValueError(f"the processes' boxes cover {len(boxes)} frames, the split has {len(split)}")
    if save:
        save_box_file(path, boxes, settings)
    return boxes
