"""Two frames at once (utils/live/overlap.py): the next frame prepared on a thread while this one's
networks run, waiting frames finished together, and the stride costed by the slower stage.

The live equality tests (tests/test_live.py) run the whole session this way; these pin the pieces:
a frame finished with others gets the score it gets alone, the preparing thread's failure reaches
the scoring thread, and the order of frames is kept.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.test_live import trained  # noqa: F401  (the module's trained model and clips)
from utils.config import load_config
from utils.live.context import LOOKAHEAD, lookback
from utils.live.overlap import Preparer, taking
from utils.live.ring import Arrival, StreamEnded, StreamRing
from utils.live.scorer import FrameScorer
from utils.live.source import decode_jpeg
from utils.live.stride import StridePolicy
from utils.own_video.model import load_video_model


def _targets(frames, cloze):
    """Every frame of one video through a ring, as calibration feeds it."""
    ring = StreamRing(24, lookback(cloze), LOOKAHEAD)
    for i, frame in enumerate(frames):
        ring.put(Arrival(0, i, i, 0.0, frame))
        while (target := ring.take(timeout=0)) is not None:
            yield target
    ring.end_segment(0, len(frames))
    ring.close()
    try:
        while (target := ring.take(timeout=0)) is not None:
            yield target
    except StreamEnded:
        return


@pytest.fixture(scope="module")
def scorer_and_frames(trained):  # noqa: F811
    root, config, clips = trained
    cfg = load_config(config)
    model, _ = load_video_model(cfg, None)
    return FrameScorer.from_config(cfg, model, "cpu"), [decode_jpeg(j) for j in clips["anomaly"]]


def test_frames_finished_together_get_the_scores_they_get_alone(scorer_and_frames):
    scorer, frames = scorer_and_frames
    prepared = [scorer.prepare(t) for t in _targets(frames, scorer.cloze)]
    alone = [scorer.finish(p) for p in prepared]
    together = [r for start in range(0, len(prepared), 3) for r in scorer.finish_all(prepared[start:start + 3])]
    assert sum(p.cubes is not None for p in prepared) > 3  # several frames with cubes go through together
    assert [r.boxes.shape for r in together] == [r.boxes.shape for r in alone]
    # One network call over more cubes: oneDNN may sum in another order, nothing more.
    np.testing.assert_allclose([r.score for r in together], [r.score for r in alone], rtol=1e-5, atol=1e-5)
    for a, b in zip(alone, together):
        np.testing.assert_allclose(b.cube_scores, a.cube_scores, rtol=1e-5, atol=1e-5)


def test_prepared_frames_come_in_order_and_the_end_is_said(scorer_and_frames):
    scorer, frames = scorer_and_frames
    preparer = Preparer(taking(_targets(frames, scorer.cloze)), scorer).start()
    order = []
    try:
        while True:
            try:
                first = preparer.get(timeout=5)
            except StreamEnded:
                break
            order += [p.arrival.index for p in (first, *preparer.waiting())]
        with pytest.raises(StreamEnded):  # and it stays said
            preparer.get(timeout=0)
    finally:
        preparer.stop()
    assert order == list(range(len(frames)))


def test_the_preparing_threads_error_reaches_the_scoring_thread(scorer_and_frames):
    scorer, frames = scorer_and_frames

    def broken():
        yield from list(_targets(frames, scorer.cloze))[:2]
        raise RuntimeError("the reader failed")

    preparer = Preparer(taking(broken()), scorer).start()
    try:
        assert [preparer.get(timeout=5).arrival.index for _ in range(2)] == [0, 1]
        with pytest.raises(RuntimeError, match="the reader failed"):
            preparer.get(timeout=5)
    finally:
        preparer.stop()


def test_an_overlapped_stride_is_costed_by_the_slower_stage():
    serial, overlapped = StridePolicy(5), StridePolicy(5, overlapped=True)
    for policy in (serial, overlapped):
        for _ in range(5):
            policy.record(1, 0.010, 0.050, network_seconds=0.040)  # flow 10 ms, boxes+cubes 10 ms, networks 40 ms
    assert serial.cost(1) == pytest.approx(0.060) and serial.cost(3) == pytest.approx(0.080)
    assert overlapped.cost(1) == pytest.approx(0.040)  # the networks are slower than flow + boxes + cubes
    assert overlapped.cost(5) == pytest.approx(0.060)  # five flows: preparing is the slower stage
    assert overlapped.fitting(25.0, 1.0) == 1 and serial.fitting(25.0, 1.0) == 2

