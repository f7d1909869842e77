"""context_range equals the reference's index lists (golden) wherever the reference returns one."""
import json
from pathlib import Path

import numpy as np
import pytest

from utils.datasets import context_range

GOLDEN = json.loads((Path(__file__).parent / "data" / "context_ranges.json").read_text())


@pytest.mark.parity
@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_context_range_matches_reference(case):
    mode, n = case.rsplit("_", 1)
    lengths = GOLDEN[case]["video_lengths"]
    frame_video_idx = np.repeat(np.arange(1, len(lengths) + 1), lengths)
    for i, expected in enumerate(GOLDEN[case]["ranges"]):
        if expected is None:
            with pytest.raises(ValueError):
                context_range(frame_video_idx, i, int(n), mode)
        else:
            assert context_range(frame_video_idx, i, int(n), mode) == expected, (case, i)


def test_predict_context_repeats_first_frame_of_video():
    video = np.array([1] * 5 + [2] * 6)
    assert context_range(video, 5, 4, "predict") == [5, 5, 5, 5, 5]
    assert context_range(video, 6, 4, "predict") == [5, 5, 5, 5, 6]
    assert context_range(video, 10, 4, "predict") == [6, 7, 8, 9, 10]
    assert context_range(video, 0, 1, "hard") == [0, 0, 1]
    assert context_range(video, 4, 1, "hard") == [3, 4, 4]
