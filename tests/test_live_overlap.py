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



def _measured(policy: StridePolicy, networks: float, prepare: float = 0.030, frames: int = 5) -> None:
    """`frames` scored frames, each with one flow of `prepare` − 5 ms, 5 ms of boxes and cubes, and `networks`."""
    for _ in range(frames):
        policy.record(1, prepare - 0.005, 0.005 + networks, network_seconds=networks)


def test_an_overlapped_run_keeps_every_frame_while_both_stages_fit_and_backs_off_from_a_stride_that_failed():
    serial, overlapped = StridePolicy(5), StridePolicy(5, overlapped=True)
    for policy in (serial, overlapped):
        _measured(policy, networks=0.034)  # 34 ms of a frame's 40 ms at 25 frames/s
    assert serial.decide(0.0, 25.0, 0) == 6  # one stage after the other: 64 ms a frame (5 flows from stride 5)
    assert overlapped.decide(0.0, 25.0, 0) == 1  # every frame: each stage fits beside the other

    _measured(overlapped, networks=0.050, frames=15)  # slower now: behind at stride 1
    assert overlapped.decide(1.0, 25.0, 0) == 2
    _measured(overlapped, networks=0.034, frames=15)
    assert overlapped.decide(5.0, 25.0, 0) is None  # fits again, but stride 2 has held only 4 s
    assert overlapped.decide(11.0, 25.0, 0) == 1  # held 10 s: every frame again
    assert overlapped.decide(11.5, 25.0, 1) is None  # one frame dropped: a hiccup
    assert overlapped.decide(12.0, 25.0, 3) == 2  # two more within 2 s: that lowering did not hold ...
    assert overlapped.decide(25.0, 25.0, 3) is None  # ... so the next try waits 20 s, not 10
    assert overlapped.decide(32.0, 25.0, 3) == 1


def test_an_overlapped_stride_that_falls_behind_rises_one_step_while_the_next_keeps_up():
    policy = StridePolicy(5, overlapped=True)
    _measured(policy, networks=0.030, prepare=0.039)  # a flow of 34 ms: flow-bound below a stride of 5
    assert policy.decide(0.0, 25.0, 0) == 1
    assert policy.fitting(25.0, 0.85) == 6  # what fits with the margin: five flows shared by six frames ...
    assert policy.decide(1.0, 25.0, 2) == 2  # ... but two drops raise it one step: 2 keeps up (73 of 80 ms)
