"""Watching a camera: VEC's scores and alarms while the frames arrive (`test.py --live SOURCE`).

    source.py        camera index, stream URL or file; the reader thread; reopening a stopped stream
    ring.py          the bounded hand-over of frames from the reader to the scorer; which frames to keep
    context.py       the frames a frame's score needs (i-4 … i+1), by the offline rules
    scorer.py        one frame's score: flow → boxes → cubes (prepare) → cloze networks (finish)
    overlap.py       the next frame prepared on a thread while this one's networks run
    stride.py        how many frames apart to score, from the measured speed
    alarms.py        events: score above the threshold, ended after --min-gap seconds below it
    calibrate.py     calibration: every frame of normal footage scored → the threshold, kept beside the model
    outputs.py       results/live/<name>/: scores.csv, events.jsonl, event images, run.json
    status.py        the terminal's lines and status line; delay statistics
    session.py       watch, run_session: the live run start to end

docs/live.md is the user's guide.
"""
from utils.live.calibrate import calibrate
from utils.live.session import run_session, watch

__all__ = ["watch", "run_session", "calibrate"]
