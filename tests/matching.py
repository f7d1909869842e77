"""Assert that two detection lists hold the same boxes up to float noise (support/box_matching.py pairs them).

`assert_same_boxes` requires that all but `max_unmatched` boxes of each list are paired, that
paired boxes agree within `box_atol` pixels, and that the order of the paired boxes is the
expected one except where their expected scores are near-tied.
"""
from __future__ import annotations

import numpy as np

from support.box_matching import Matching, as_boxes, match_boxes


def assert_same_boxes(actual_boxes, expected_boxes, actual_scores=None, expected_scores=None, actual_labels=None,
                      expected_labels=None, *, max_unmatched: int, box_atol: float, min_iou: float = 0.99,
                      score_rtol: float = 0.0, score_atol: float = 0.0, tie_atol: float | None = None,
                      what: str = "boxes") -> Matching:
    """The two lists hold the same boxes up to float noise: see the module docstring.

    `tie_atol` (default: the score tolerance at the larger score) is how close two expected scores must be
    for their boxes to be allowed to appear in the other order."""
    m = match_boxes(actual_boxes, expected_boxes, actual_scores, expected_scores, actual_labels, expected_labels,
                    min_iou, score_rtol, score_atol, coord_atol=box_atol)
    n_actual, n_expected = len(as_boxes(actual_boxes)), len(as_boxes(expected_boxes))
    assert abs(n_actual - n_expected) <= max_unmatched, f"{what}: {n_actual} found, {n_expected} expected"
    assert len(m.unmatched_actual) <= max_unmatched and len(m.unmatched_expected) <= max_unmatched, (
        f"{what}: {len(m.unmatched_actual)} of {n_actual} found and {len(m.unmatched_expected)} of {n_expected} "
        f"expected have no partner (allowed {max_unmatched}); unmatched expected indices "
        f"{m.unmatched_expected[:20].tolist()}, unmatched found {m.unmatched_actual[:20].tolist()}")
    assert m.max_box_diff <= box_atol, f"{what}: paired boxes differ by {m.max_box_diff:.4g} px > {box_atol}"
    if expected_scores is not None and len(m.actual) > 1:
        # Walking the pairs in the order found, the expected scores must not increase, except by a near-tie.
        se = np.asarray(expected_scores, np.float64).reshape(-1)
        ordered = se[m.expected[np.argsort(m.actual)]]
        slack = tie_atol if tie_atol is not None else score_atol + score_rtol * np.abs(ordered)
        rises = ordered[1:] - np.minimum.accumulate(ordered)[:-1]
        bad = np.nonzero(rises > np.broadcast_to(slack, ordered.shape)[1:])[0]
        assert len(bad) == 0, (f"{what}: found in another order than expected beyond near-ties, e.g. found "
                               f"position {bad[0] + 1} has expected score {ordered[bad[0] + 1]:.7g} after "
                               f"{np.minimum.accumulate(ordered)[bad[0]]:.7g}")
    return m
