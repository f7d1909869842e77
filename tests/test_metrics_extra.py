"""RBDC/TBDC, AP, pixel AUROC, smoothing, per-video tables and region ground truth,
on hand-computed cases."""
import math

import cv2
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d
from sklearn.metrics import average_precision_score, roc_auc_score

from utils.datasets import generate_synthetic as generate
from utils.datasets import open_split
from utils.datasets.regions import REGION_FOLDER, read_region_file, read_region_ground_truth, region_files, region_line
from utils.infra.errors import VECError
from utils.metrics import (PROTOCOL, average_precision, macro_auroc, per_video_table, pixel_auroc, pixel_score_map,
                           rbdc_tbdc, smooth_scores)
from utils.scoring import NO_BOX_SCORE

BOX = [0, 0, 9, 9]  # a 10x10 box in inclusive coordinates: area 100


def det(video, frame, box, score):
    return [video, frame, *box, score]


def region(video, frame, box, track):
    return [video, frame, *box, track]


# ----------------------------------------------------------------- RBDC / TBDC, by hand

def test_equal_scores_keep_input_order():
    gt = np.array([region(1, 0, BOX, 7)])
    false_pos = det(1, 1, BOX, 0.5)  # frame 1 has no region
    true_pos = det(1, 0, BOX, 0.5)  # IoU 1 with the region
    # num_frames = 2: each false positive adds 0.5 to the x axis.
    # FP first: points (0,0) (0.5,0) (0.5,1), extended to (1,1): area 0.5 * 1 = 0.5.
    assert rbdc_tbdc(np.array([false_pos, true_pos]), gt, 2) == (0.5, 0.5)
    # TP first: (0,0) (0,1) (0.5,1) (1,1): area 1 * 1 = 1.
    assert rbdc_tbdc(np.array([true_pos, false_pos]), gt, 2) == (1.0, 1.0)


def _scene():
    # 5 regions, 3 tracks: track 0 has 3 regions, track 1 one (same frame as track 0's
    # first), track 2 one, in video 2, never detected.
    gt = np.array([region(1, 0, BOX, 0),
                   region(1, 0, [20, 0, 29, 9], 1),
                   region(1, 1, BOX, 0),
                   region(1, 2, BOX, 0),
                   region(2, 0, [50, 50, 59, 59], 2)])
    a = det(1, 0, [0, 0, 29, 9], 0.9)  # 30x10 = 300 px; 100 px shared with each region of frame 0:
    #                                    IoU 100 / 300 = 1/3 with both -> 2 true positives
    b = det(1, 0, BOX, 0.8)  # overlaps region 0 again: 0 true positives, not a false positive
    c = det(2, 3, BOX, 0.7)  # no region in video 2 frame 3: false positive
    d = det(1, 1, BOX, 0.6)  # region 2: 1 true positive
    return np.array([d, b, c, a]), gt  # shuffled: the scores set the order a, b, c, d


def test_several_regions_per_frame_and_the_appended_point():
    detections, gt = _scene()
    # num_frames = 4: a false positive adds 0.25.
    # after:    start   a     b     c     d
    # fpr:      0       0     0     .25   .25   -> never reaches 1: append (1, last rates)
    # rbdr:     0       2/5   2/5   2/5   3/5
    # area: 0..0.25 at 0.4 = 0.1; 0.25..1 at 0.6 = 0.45; total 0.55
    # tracks (alpha 0.1): after a, track 0 has 1/3 >= 0.1 and track 1 has 1/1: tbdr 2/3 from
    # a on; track 2 stays undetected. area = 1 * 2/3.
    rbdc, tbdc = rbdc_tbdc(detections, gt, 4)
    assert rbdc == pytest.approx(0.55, abs=1e-12)
    assert tbdc == pytest.approx(2 / 3, abs=1e-12)


def test_alpha_sets_the_share_of_a_track_to_detect():
    detections, gt = _scene()
    # alpha 0.5: after a, track 0 has 1/3 < 0.5 -> only track 1: tbdr 1/3; after d track 0
    # has 2/3 >= 0.5: tbdr 2/3. area = 0.25 * 1/3 + 0.75 * 2/3 = 1/12 + 1/2 = 7/12
    assert rbdc_tbdc(detections, gt, 4, alpha=0.5)[1] == pytest.approx(7 / 12, abs=1e-12)
    # alpha 1: track 0's third region is never matched -> only track 1: area 1/3
    assert rbdc_tbdc(detections, gt, 4, alpha=1.0)[1] == pytest.approx(1 / 3, abs=1e-12)
    # RBDC does not depend on alpha
    assert rbdc_tbdc(detections, gt, 4, alpha=1.0)[0] == pytest.approx(0.55, abs=1e-12)


def test_alpha_ratio_is_compared_in_floating_point():
    # a track of 100 regions, alpha 0.07: 7 matched regions make 7/100 = 0.07 >= 0.07, though
    # 0.07 * 100 = 7.000000000000001 would ask for 8
    gt = np.array([region(1, f, BOX, 0) for f in range(100)])
    detections = np.array([det(1, f, BOX, 1.0 - f / 100) for f in range(7)])
    # tbdr: 0 ... 0, 1 at fpr 0; extended to (1, 1): area 1. One match fewer: area 0.
    assert rbdc_tbdc(detections, gt, 10, alpha=0.07)[1] == 1.0
    assert rbdc_tbdc(detections[:6], gt, 10, alpha=0.07)[1] == 0.0


def test_curve_is_cut_at_one_false_positive_per_frame():
    gt = np.array([region(1, 0, BOX, 0), region(1, 1, BOX, 1)])
    detections = np.array([det(1, 5, BOX, 0.9),   # FP
                           det(1, 0, BOX, 0.8),   # TP region 0
                           det(1, 6, BOX, 0.7),   # FP
                           det(1, 7, BOX, 0.6),   # FP
                           det(1, 1, BOX, 0.5)])  # TP region 1, but past the cut
    # num_frames = 2: fpr 0, .5, .5, 1, 1.5, 1.5; rbdr 0, 0, .5, .5, .5, 1
    # keep up to the last fpr <= 1 (fpr exactly 1: nothing appended): x 0 .5 .5 1, y 0 0 .5 .5
    # area = 0.5 * 0.5 = 0.25 (without the cut: + 0.5 * 0.5 + 0 = 0.5). Tracks: same steps.
    assert rbdc_tbdc(detections, gt, 2) == (0.25, 0.25)


def test_no_detections_give_zero():
    gt = np.array([region(1, 0, BOX, 0)])
    # only (0, 0) and the appended (1, 0)
    assert rbdc_tbdc(np.zeros((0, 7)), gt, 10) == (0.0, 0.0)


def test_iou_exactly_beta_matches():
    gt = np.array([region(1, 0, BOX, 0)])
    line = np.array([det(1, 0, [0, 0, 9, 0], 1.0)])  # 10x1 = 10 px inside the region:
    # IoU = 10 / (100 + 10 - 10) = 0.1 exactly -> a match: (0,0) (0,1) (1,1): area 1
    assert rbdc_tbdc(line, gt, 1, beta=0.1) == (1.0, 1.0)
    # just above: a false positive, fpr 1 at once: (0,0) (1,0): area 0
    assert rbdc_tbdc(line, gt, 1, beta=0.1 + 1e-12) == (0.0, 0.0)


def test_same_frame_number_in_another_video_does_not_match():
    gt = np.array([region(1, 0, BOX, 0)])
    assert rbdc_tbdc(np.array([det(2, 0, BOX, 1.0)]), gt, 1) == (0.0, 0.0)


def _loop_rbdc_tbdc(detections, gt, num_frames, alpha, beta):
    """A direct, unvectorised transcription of the definition (to check the fast one)."""
    def iou(a, b):
        iw = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
        ih = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
        inter = iw * ih
        return inter / ((a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter)

    order = sorted(range(len(detections)), key=lambda i: detections[i][6], reverse=True)
    found = [False] * len(gt)
    tracks = sorted(set(gt[:, 6]))
    hits = {t: 0 for t in tracks}
    size = {t: int(np.sum(gt[:, 6] == t)) for t in tracks}
    fp, tp, tbdr = [0], [0], [0.0]
    for i in order:
        d = detections[i]
        overlapping = [j for j, g in enumerate(gt) if g[0] == d[0] and g[1] == d[1] and iou(d[2:6], g[2:6]) >= beta]
        new = [j for j in overlapping if not found[j]]
        for j in new:
            found[j] = True
            hits[gt[j, 6]] += 1
        fp.append(fp[-1] + (not overlapping))
        tp.append(tp[-1] + len(new))
        tbdr.append(sum(hits[t] / size[t] >= alpha for t in tracks) / len(tracks))
    fpr, rbdr, tbdr = np.array(fp) / num_frames, np.array(tp) / len(gt), np.array(tbdr)
    end = np.flatnonzero(fpr <= 1)[-1] + 1
    x, r, t = list(fpr[:end]), list(rbdr[:end]), list(tbdr[:end])
    if x[-1] != 1:
        x, r, t = x + [1.0], r + [r[-1]], t + [t[-1]]
    return np.trapezoid(r, x), np.trapezoid(t, x)


def _random_scene(seed):
    rng = np.random.default_rng(seed)
    gt = []
    for track in range(6):
        video, start = rng.integers(1, 3), rng.integers(0, 8)
        for frame in range(start, start + rng.integers(1, 8)):
            x, y = rng.integers(0, 30, 2)
            gt.append(region(video, frame, [x, y, x + rng.integers(3, 12), y + rng.integers(3, 12)], track))
    gt = np.array(gt, dtype=float)
    detections = []
    for _ in range(80):
        if rng.random() < 0.5:  # near a region: many matches, repeats and several regions per detection
            g = gt[rng.integers(len(gt))]
            video, frame, box = g[0], g[1], g[2:6] + rng.integers(-4, 5, 4)
        else:
            x, y = rng.integers(0, 35, 2)
            video, frame, box = rng.integers(1, 3), rng.integers(0, 14), [x, y, x + rng.integers(2, 14),
                                                                          y + rng.integers(2, 14)]
        detections.append(det(video, frame, box, rng.integers(0, 6) / 5))  # many equal scores
    return np.array(detections, dtype=float), gt


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_equals_the_definition_on_random_scenes(seed):
    detections, gt = _random_scene(seed)
    for alpha, beta in ((0.1, 0.1), (0.5, 0.3), (0.0, 0.1)):
        expected = _loop_rbdc_tbdc(detections, gt, 60, alpha, beta)
        assert 0 < expected[0] < 1 and expected[1] > 0  # a scene where the curves say something
        assert rbdc_tbdc(detections, gt, 60, alpha, beta) == pytest.approx(expected, abs=1e-12)


def test_rbdc_tbdc_rejects_bad_input():
    with pytest.raises(ValueError):
        rbdc_tbdc(np.zeros((0, 7)), np.zeros((0, 7)), 10)  # no regions: rates undefined
    with pytest.raises(ValueError):
        rbdc_tbdc(np.array([det(1, 0.5, BOX, 1.0)]), np.array([region(1, 0, BOX, 0)]), 10)


# ----------------------------------------------------------------- AP

def test_average_precision_by_hand_and_against_sklearn():
    scores, labels = np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])
    # thresholds 0.9: P 1, R 1/2; 0.8: P 1/2, R 1/2; 0.7: P 2/3, R 1
    # AP = sum (R_n - R_{n-1}) P_n = 1/2 * 1 + 1/2 * 2/3 = 5/6
    assert average_precision(scores, labels) == pytest.approx(5 / 6, abs=1e-12)
    rng = np.random.default_rng(0)
    scores, labels = rng.integers(0, 5, 40).astype(float), rng.integers(0, 2, 40)  # with ties
    assert average_precision(scores, labels) == average_precision_score(labels, scores)
    with pytest.raises(ValueError):
        average_precision(scores, np.zeros(40))


# ----------------------------------------------------------------- pixel level

def test_pixel_score_map_is_the_max_of_covering_boxes():
    boxes = np.array([[0.2, 0, 3, 2], [1, 1, 4, 3]])  # ceiled: [1,0,3,2] -> rows 0-1, cols 1-2; rows 1-2, cols 1-3
    score_map = pixel_score_map((4, 5), boxes, np.array([2.0, 1.0]), fill=-1.0)
    expected = np.array([[-1, 2, 2, -1, -1],
                         [-1, 2, 2, 1, -1],
                         [-1, 1, 1, 1, -1],
                         [-1, -1, -1, -1, -1]], dtype=float)
    np.testing.assert_array_equal(score_map, expected)
    assert pixel_score_map((2, 2), np.zeros((0, 4)), np.zeros(0))[0, 0] == NO_BOX_SCORE


def test_pixel_auroc_by_hand():
    # 4 pixels: anomalous scores 3, 1; normal 1, 0. Pairs (pos, neg): (3,1) >, (3,0) >,
    # (1,1) tie = 1/2, (1,0) > -> AUROC = 3.5 / 4
    maps = [np.array([[3.0, 1.0]]), np.array([[1.0, 0.0]])]
    masks = [np.array([[255, 255]]), np.array([[0, 0]])]
    assert pixel_auroc(maps, masks) == 0.875
    assert pixel_auroc(zip(maps, masks)) == 0.875  # pairs
    with pytest.raises(ValueError):
        pixel_auroc(maps, [np.zeros((1, 2)), np.zeros((1, 2))])  # no anomalous pixel


@pytest.mark.parametrize("merge_every", [1, 1_000_000])
def test_pixel_auroc_equals_sklearn_on_box_maps(merge_every):
    rng = np.random.default_rng(3)
    maps, masks = [], []
    for _ in range(6):
        boxes = rng.integers(0, 20, (4, 2))
        boxes = np.column_stack([boxes, boxes + rng.integers(2, 12, (4, 2))])
        maps.append(pixel_score_map((24, 32), boxes, rng.normal(size=4).round(1)))
        mask = np.zeros((24, 32), np.uint8)
        y, x = rng.integers(0, 16, 2)
        mask[y:y + 8, x:x + 8] = 255
        masks.append(mask)
    expected = roc_auc_score(np.concatenate([m.ravel() > 0 for m in masks]), np.concatenate([m.ravel() for m in maps]))
    assert pixel_auroc(iter(maps), iter(masks), merge_every=merge_every) == pytest.approx(expected, abs=1e-12)
    assert pixel_auroc(np.stack(maps), np.stack(masks)) == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------- smoothing

def test_smoothing_an_impulse_gives_the_normalised_gaussian():
    scores = np.zeros(21)
    scores[10] = 1.0
    smoothed = smooth_scores(scores, np.ones(21, int), sigma=1.0)
    # scipy's kernel: exp(-k^2 / 2) for |k| <= int(4 * 1 + 0.5) = 4, divided by its sum
    weights = np.exp(-np.arange(-4, 5) ** 2 / 2)
    expected = np.zeros(21)
    expected[6:15] = weights / weights.sum()
    np.testing.assert_allclose(smoothed, expected, atol=1e-15)
    assert smoothed[10] == pytest.approx(1 / (1 + 2 * math.exp(-0.5) + 2 * math.exp(-2) + 2 * math.exp(-4.5)
                                             + 2 * math.exp(-8)), abs=1e-15)


def test_smoothing_stays_inside_each_video():
    scores = np.array([0, 0, 0, 0, 5.0, 7, 7, 7, 7, 7])
    videos = np.array([1] * 5 + [2] * 5)
    smoothed = smooth_scores(scores, videos, sigma=2.0)
    # video 2 is constant: reflecting at its ends keeps it 7 -- nothing leaks from video 1
    np.testing.assert_allclose(smoothed[5:], 7.0, atol=1e-12)
    np.testing.assert_allclose(smoothed[:5], gaussian_filter1d(scores[:5], 2.0, mode="reflect"))
    assert smoothed[4] < 5.0 and smoothed[0] > 0.0


def test_smoothing_replaces_the_no_box_sentinel_by_the_videos_lowest_score():
    scores = np.array([2.0, NO_BOX_SCORE, 4.0, NO_BOX_SCORE, NO_BOX_SCORE])
    videos = np.array([1, 1, 1, 2, 2])
    smoothed = smooth_scores(scores, videos, sigma=1.0)
    np.testing.assert_allclose(smoothed[:3], gaussian_filter1d([2.0, 2.0, 4.0], 1.0))  # sentinel -> 2.0
    assert smoothed[:3].min() >= 2.0
    np.testing.assert_array_equal(smoothed[3:], NO_BOX_SCORE)  # video without a real score: kept


def test_sigma_zero_returns_the_input():
    scores = np.array([1.0, NO_BOX_SCORE, 3.0])
    np.testing.assert_array_equal(smooth_scores(scores, np.ones(3, int), 0), scores)


# ----------------------------------------------------------------- per-video table and protocol

def test_per_video_table_and_macro_auroc():
    scores = np.array([0.1, 0.9, 0.2, 0.8, 0.6, 0.3, 0.4, 0.5])
    labels = np.array([0, 1, 1, 0, 1, 0, 0, 0])
    videos = np.array([1, 1, 2, 2, 2, 3, 3, 3])
    table = per_video_table(scores, labels, videos, ["Test001", "Test002", "Test003"])
    assert [row["video"] for row in table] == ["Test001", "Test002", "Test003"]
    assert [(row["frames"], row["anomalous_frames"]) for row in table] == [(2, 1), (3, 2), (3, 0)]
    # video 1: the anomaly scores highest -> AUROC 1, AP 1
    assert table[0]["auroc"] == 1.0 and table[0]["ap"] == 1.0
    # video 2: anomalous 0.2, 0.6; normal 0.8 -> no pair ranks the anomaly higher: AUROC 0;
    # ranking 0.8 (n), 0.6 (a), 0.2 (a): AP = 1/2 * 1/2 + 1/2 * 2/3 = 7/12
    assert table[1]["auroc"] == 0.0 and table[1]["ap"] == pytest.approx(7 / 12, abs=1e-12)
    assert table[2]["auroc"] is None and table[2]["ap"] is None  # one class only
    # utils.metrics.macro_auroc is the mean over the videos with both classes
    assert macro_auroc(scores, labels, videos) == pytest.approx(np.mean([r["auroc"] for r in table[:2]]))
    assert "micro" in PROTOCOL and "macro" in PROTOCOL and "never replaces" in PROTOCOL


# ----------------------------------------------------------------- region ground truth

def test_region_file_lines_convert_like_the_widely_used_reader(tmp_path):
    path = tmp_path / "Test001_gt.txt"
    path.write_text("001.tif 0 57.5 80.0 13 19\n"
                    "012.tif 1 100.3 50.6 20.2 30.1\n"
                    "\n"
                    "003.tif 2 2 2 10 10\n")
    # line 1: x1 = floor(57.5 - 6.5) = 51, y1 = floor(80 - 9.5) = 70, x2 = 51 + 13 = 64, y2 = 70 + 19 = 89
    # line 2: x1 = floor(90.2) = 90, y1 = floor(35.55) = 35, x2 = ceil(110.2) = 111, y2 = ceil(65.1) = 66
    # line 3: x1 = y1 = floor(-3) -> clipped to 0; x2 = y2 = ceil(-3 + 10) = 7
    expected = [[0, 51, 70, 64, 89, 0], [11, 90, 35, 111, 66, 1], [2, 0, 0, 7, 7, 2]]
    np.testing.assert_array_equal(read_region_file(path), expected)
    clipped = read_region_file(path, frame_size=(60, 100))  # (height, width): x2 <= 99, y2 <= 59
    np.testing.assert_array_equal(clipped[:2, 3:5], [[64, 59], [99, 59]])
    # the writer's line gives its inclusive box back, a one-pixel-wide one included
    (tmp_path / "round.txt").write_text(region_line("007.tif", 3, 5, 4, 5, 9) + "\n")
    np.testing.assert_array_equal(read_region_file(tmp_path / "round.txt"), [[6, 5, 4, 5, 9, 3]])
    (tmp_path / "bad.txt").write_text("001.tif 0 1 2 3\n")
    with pytest.raises(VECError, match="line 1"):
        read_region_file(tmp_path / "bad.txt")


def test_region_files_match_videos_and_track_ids_become_unique(tmp_path):
    (tmp_path / "Test1_gt.txt").write_text("0001.jpg 0 10 10 4 4\n0001.jpg 1 30 30 4 4\n")
    (tmp_path / "Test03_gt.txt").write_text("0002.jpg 0 10 10 4 4\n0003.jpg 1 10 10 4 4\n")
    files = region_files(tmp_path, ["01", "02", "03"])  # Avenue's video names
    assert files == {1: tmp_path / "Test1_gt.txt", 3: tmp_path / "Test03_gt.txt"}
    regions = read_region_ground_truth(files)
    np.testing.assert_array_equal(regions[:, [0, 1, 6]], [[1, 0, 0], [1, 0, 1], [3, 1, 2], [3, 2, 3]])
    (tmp_path / "Test9_gt.txt").write_text("")
    with pytest.raises(VECError, match="matches no test video"):
        region_files(tmp_path, ["01", "02", "03"])


def test_synthetic_regions_agree_with_the_pixel_masks(tmp_path):
    root = generate(tmp_path / "synthetic", seed=5, n_train=0, n_test=3, n_frames=30, progress=False)
    test = open_split(root, "UCSDped2", "test")
    files = region_files(root / REGION_FOLDER, test.video_names)
    assert sorted(files) == [1, 2, 3]
    regions = read_region_ground_truth(files, frame_size=(160, 240))
    starts = np.searchsorted(test.frame_video_idx, test.frame_video_idx)  # first frame of each frame's video
    for i, mask_path in enumerate(test.mask_paths):
        rows, cols = np.nonzero(cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE))
        here = regions[(regions[:, 0] == test.frame_video_idx[i]) & (regions[:, 1] == i - starts[i])]
        if len(rows):  # one anomalous mover per video: its box is the mask's bounding box
            assert here[:, 2:6].tolist() == [[cols.min(), rows.min(), cols.max(), rows.max()]]
        else:
            assert len(here) == 0
    assert len(regions) == test.labels.sum()
    # one track per anomalous mover, unique over the test set
    assert [sorted(set(regions[regions[:, 0] == v, 6])) for v in (1, 2, 3)] == [[0], [1], [2]]
    # the regions themselves, as detections, make a perfect detector
    perfect = np.column_stack([regions[:, :6], np.ones(len(regions))])
    assert rbdc_tbdc(perfect, regions, len(test)) == (1.0, 1.0)
