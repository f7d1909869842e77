"""The set comparison of box lists (support/box_matching.py, tests/matching.py) accepts float noise and
near-tie swaps, and nothing more."""
import numpy as np
import pytest

from support.box_matching import match_boxes
from tests.matching import assert_same_boxes

BOXES = np.array([[10, 10, 50, 60], [100, 20, 140, 90], [0, 200, 0, 240], [30, 5, 30.13, 5.84], [60, 60, 90, 80]],
                 np.float32)
SCORES = np.array([0.9, 0.5, 0.4999, 0.3, 0.2], np.float32)
LABELS = np.array([1, 2, 2, 3, 1])
TOL = dict(box_atol=0.1, score_atol=1e-3, max_unmatched=0)


def test_noise_and_near_tie_swap_are_accepted():
    order = [0, 2, 1, 3, 4]  # 0.5 and 0.4999: a near-tie, found in the other order
    noisy = BOXES[order] + np.float32(0.004)  # the thin box (0.13 x 0.84 px) drops below IoU 0.99
    m = assert_same_boxes(noisy, BOXES, SCORES[order] + 2e-4, SCORES, LABELS[order], LABELS, **TOL)
    assert m.expected[np.argsort(m.actual)].tolist() == order and m.max_box_diff == pytest.approx(0.004, abs=1e-5)


@pytest.mark.parametrize("change", ["shift", "label", "score", "order", "missing"])
def test_each_kind_of_difference_fails(change):
    boxes, scores, labels = BOXES.copy(), SCORES.copy(), LABELS.copy()
    if change == "shift":
        boxes[1] += [0.3, 0, 0.3, 0]  # IoU still > 0.99, but beyond box_atol
    elif change == "label":
        labels[0] = 7
    elif change == "score":
        scores[4] += 0.01
    elif change == "order":  # 0.9 and 0.3 are no near-tie
        boxes, scores, labels = boxes[[3, 1, 2, 0, 4]], scores[[3, 1, 2, 0, 4]], labels[[3, 1, 2, 0, 4]]
    else:
        boxes, scores, labels = boxes[:-1], scores[:-1], labels[:-1]
    with pytest.raises(AssertionError):
        assert_same_boxes(boxes, BOXES, scores, SCORES, labels, LABELS, **TOL)


def test_allowed_unmatched_boxes_at_the_cut():
    other = np.array([[200, 100, 230, 150]], np.float32)  # a near-tied box took the last slot
    boxes, scores = np.vstack([BOXES[:-1], other]), np.append(SCORES[:-1], np.float32(0.2001))
    m = match_boxes(boxes, BOXES, scores, SCORES, min_iou=0.99, score_atol=1e-3, coord_atol=0.1)
    assert m.unmatched_actual.tolist() == [4] and m.unmatched_expected.tolist() == [4]
    assert_same_boxes(boxes, BOXES, scores, SCORES, box_atol=0.1, score_atol=1e-3, max_unmatched=1)
    with pytest.raises(AssertionError, match="no partner"):
        assert_same_boxes(boxes, BOXES, scores, SCORES, box_atol=0.1, score_atol=1e-3, max_unmatched=0)


def test_one_to_one_prefers_more_pairs():
    # Taking the best IoU first would pair found 0 with expected 0 (0.998) and leave found 1 without partner
    # (IoU 0.982 with expected 1); the assignment pairs found 0 with expected 1 (0.991) and found 1 with 0 (0.992).
    expected = np.array([[0, 0, 100, 100], [0.5, 0, 100.5, 100]], np.float32)
    found = np.array([[0.1, 0, 100.1, 100], [-0.4, 0, 99.6, 100]], np.float32)
    m = match_boxes(found, expected, min_iou=0.99)
    assert sorted(zip(m.actual.tolist(), m.expected.tolist())) == [(0, 1), (1, 0)]


def test_pairs_carry_their_iou():
    shifted = BOXES[:2] + np.array([[4, 0, 4, 0], [0, 0, 0, 0]], np.float32)  # 40 px wide: IoU 36 / 44
    m = match_boxes(shifted, BOXES[:2], min_iou=0.5)
    assert m.actual.tolist() == [0, 1] and m.ious == pytest.approx([36 / 44, 1.0])
