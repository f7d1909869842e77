"""Which frames of a stream a frame's score needs, by the very rules the offline pipeline uses.

A stretch of a stream without a break (a *segment*: from an open or reopen of the source
to the read that fails) is one video in VEC's sense. The offline rules on a video are
`context_range` (raw and flow context, docs/method.md §1 and §4), `flow_pair` (the pair
whose flow is stored for a frame, §2) and the `hard` context i-1, i, i+1 of the motion
boxes (§3). They are applied here, unchanged, to a window of a few frames around frame i,
so they cost the same at frame 10 and at frame 10 million; `tests/test_live.py` checks
that the window gives the whole video's answers.

For the `predict` context (the only one the cloze networks take) frame i needs frames
i-4 … i+1: its own and four earlier frames (raw and flow context), the flows of those
frames (pairs (j, j+1)) and the next frame (motion boxes). So a frame's score is ready
one frame after it arrives, or as soon as the stream stops when it is the last frame.
"""
from __future__ import annotations

from utils.config import ClozeConfig
from utils.datasets import context_range
from utils.flow import flow_pair

LOOKAHEAD = 1  # frame i+1: the flow pair (i, i+1) and the motion boxes of i-1, i, i+1
BOX_CONTEXT = 1  # motion boxes: frames i-1, i, i+1 (docs/method.md §3)


def lookback(cloze: ClozeConfig) -> int:
    """How many frames before frame i its score needs (4 for the paper's settings)."""
    return max(cloze.context_frame_num, cloze.context_of_num, BOX_CONTEXT)


class Segment:
    """The frames 0 … length-1 of one segment as VEC's one video; `length` None while it goes on.

    `context` has the signature of `VideoSplit.context`, so `utils.flow.flow_pair` takes a
    Segment as it takes a split.
    """

    def __init__(self, length: int | None = None) -> None:
        self.length = length

    def context(self, i: int, n: int, border_mode: str) -> list[int]:
        # A window reaching 2n+2 frames either side of i holds every frame the rules look at
        # (at most n + the border repeats); beyond the known end there are no frames.
        margin = 2 * n + 2
        first = max(0, i - margin)
        last = i + margin if self.length is None else min(self.length - 1, i + margin)
        return [first + j for j in context_range([1] * (last - first + 1), i - first, n, border_mode)]

    def flow_pair(self, j: int) -> tuple[int, int]:
        return flow_pair(self, j)


def frames_needed(segment: Segment, i: int, cloze: ClozeConfig) -> dict[str, list]:
    """The segment indices frame i's score reads: `raw` (its raw context), `flow` (the frames whose
    flows it crops), `pairs` (each of those flows' frame pair), `boxes` (the motion boxes' frames)."""
    flow_frames = segment.context(i, cloze.context_of_num, cloze.border_mode)
    return {"raw": segment.context(i, cloze.context_frame_num, cloze.border_mode),
            "flow": flow_frames,
            "pairs": [segment.flow_pair(j) for j in flow_frames],
            "boxes": segment.context(i, BOX_CONTEXT, "hard")}

