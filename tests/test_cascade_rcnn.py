"""Cascade R-CNN R101-FPN equals MMDetection 3.3 stage by stage (golden vectors, det_fill weights)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.detfill import det_fill
from models import CascadeRCNN
from utils.foreground import CascadeRCNNDetector, load_cascade_rcnn
from utils.errors import VECError

DATA = Path(__file__).parent / "data"
GOLDEN = np.load(DATA / "cascade_rcnn.npz")
IMG_SHAPE = tuple(GOLDEN["img_shape"].tolist())
SCALE_FACTOR = tuple(GOLDEN["scale_factor"].tolist())


@pytest.fixture(scope="module")
def model():
    m = CascadeRCNN()
    m.load_state_dict(det_fill(m.state_dict()))
    return m.eval()


@pytest.fixture(scope="module")
def feats(model):
    with torch.no_grad():
        return model.extract_feat(torch.from_numpy(GOLDEN["inputs"]))


def _close(actual, key):
    expected = GOLDEN[key]
    np.testing.assert_allclose(actual.detach().numpy(), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max(),
                               err_msg=key)


def test_state_dict_equals_model_zoo_keys():
    manifest = json.loads((DATA / "cascade_rcnn_manifest.json").read_text())
    assert [[k, list(v.shape)] for k, v in CascadeRCNN().state_dict().items()] == manifest


def test_preprocessing_matches_mmdet(model):
    inputs, img_shape, scale_factor = model.preprocess(GOLDEN["image_bgr"], tuple(GOLDEN["scale"].tolist()))
    assert img_shape == IMG_SHAPE and scale_factor == SCALE_FACTOR
    assert np.abs(inputs.numpy() - GOLDEN["inputs"]).max() <= 1 / 57.12 + 1e-6  # within one grey level
    assert CascadeRCNN.rescaled_size(240, 360) == (800, 1200) and CascadeRCNN.rescaled_size(480, 856) == (747, 1333)


def test_fpn_and_rpn_outputs(model, feats):
    for level, feat in zip(range(2, 7), feats):
        _close(feat, f"neck_p{level}")
    with torch.no_grad():
        cls, reg = model.rpn(feats)
    for level, c, r in zip(range(2, 7), cls, reg):
        _close(c, f"rpn_cls_p{level}")
        _close(r, f"rpn_reg_p{level}")


def test_proposals_and_cascade_stages(model, feats):
    with torch.no_grad():
        proposals, scores = model.proposals_with_scores(feats, IMG_SHAPE)
        np.testing.assert_allclose(proposals.numpy(), GOLDEN["proposals"], atol=0.01, rtol=0)
        _close(scores, "proposal_scores")
        assert torch.equal(model.proposals(feats, IMG_SHAPE), proposals)
        rois, cls_scores, deltas = model.refine(feats, proposals, IMG_SHAPE)
    for stage in range(3):
        np.testing.assert_allclose(rois[stage].numpy(), GOLDEN[f"stage{stage}_rois"], atol=0.01, rtol=0)
        _close(cls_scores[stage], f"stage{stage}_cls_score")
        _close(deltas[stage], f"stage{stage}_bbox_pred")
        with torch.no_grad():
            direct = model.roi_stage(stage, feats, torch.from_numpy(GOLDEN[f"stage{stage}_rois"]))
        _close(direct[0], f"stage{stage}_cls_score")


def _assert_golden_detections(boxes, scores, labels):
    np.testing.assert_allclose(boxes, GOLDEN["det_bboxes"], atol=0.01, rtol=0)
    np.testing.assert_allclose(scores, GOLDEN["det_scores"], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(labels, GOLDEN["det_labels"])


def test_final_detections(model):
    with torch.no_grad():
        boxes, scores, labels = model.detect(torch.from_numpy(GOLDEN["inputs"]), IMG_SHAPE, SCALE_FACTOR, score_thr=0.0)
    _assert_golden_detections(boxes.numpy(), scores.numpy(), labels.numpy())


def test_model_zoo_checkpoint_loads_strictly(tmp_path, model):
    path = tmp_path / "cascade_rcnn_r101_fpn_1x_coco_20200317-0b6a2fbf.pth"
    torch.save({"state_dict": det_fill(CascadeRCNN().state_dict()),
                "meta": {"mmdet_version": "2.0.0", "epoch": 12, "CLASSES": ["person", "bicycle"]}}, path)
    loaded = load_cascade_rcnn(path)
    assert not loaded.training
    with torch.no_grad():
        boxes, scores, labels = loaded.detect(torch.from_numpy(GOLDEN["inputs"]), IMG_SHAPE, SCALE_FACTOR, 0.0)
    _assert_golden_detections(boxes.numpy(), scores.numpy(), labels.numpy())


def test_missing_or_legacy_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(VECError, match="detector = none"):
        load_cascade_rcnn(tmp_path / "missing.pth")
    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(1)}, "meta": {}}, tmp_path / "v1.pth")
    with pytest.raises(VECError, match="not supported"):
        load_cascade_rcnn(tmp_path / "v1.pth")


def test_batched_detector_equals_one_at_a_time(model):
    frame = GOLDEN["image_bgr"]
    detector = CascadeRCNNDetector(model, batch_size=2, score_thr=0.0, scale=(384, 256))
    both = detector([frame, frame[:, ::-1].copy()])
    single = CascadeRCNNDetector(model, batch_size=1, score_thr=0.0, scale=(384, 256))([frame])
    assert len(both) == 2 and both[0].shape[1] == 5 and both[0].dtype == np.float32
    np.testing.assert_allclose(both[0], single[0], atol=1e-3)
    _assert_golden_detections(both[0][:, :4], both[0][:, 4], GOLDEN["det_labels"])


def test_mmdet_backend_explains_how_to_install():
    from utils.foreground import MMDetDetector

    with pytest.raises(VECError, match="requirements-mmdet.txt"):
        MMDetDetector.from_checkpoint("config.py", "checkpoint.pth")


def test_config_detector_feeds_the_box_pipeline(tmp_path, small_synthetic):
    """detector = cascade_rcnn as train.py builds it, on a real frame, through docs/method.md §3's steps."""
    from utils.foreground import build_detector, frame_boxes
    from utils.datasets import open_split
    from utils.foreground import filter_detections, remove_covered

    path = tmp_path / "cascade.pth"
    torch.save({"state_dict": det_fill(CascadeRCNN().state_dict()), "meta": {}}, path)
    detector = build_detector("cascade_rcnn", checkpoint=path, config=None, device="cpu", batch_size=1)
    split = open_split(small_synthetic.dataset_dir, "UCSDped2", "test")
    frames = np.stack([split.read_frame(j) for j in (9, 10, 11)])
    detections = detector([frames[1]])[0]
    assert detections.ndim == 2 and detections.shape[1] == 5 and len(detections) > 0
    assert detections[:, :4].min() >= 0 and detections[:, 2].max() <= 240 and detections[:, 3].max() <= 160
    params = small_synthetic.dataset.boxes
    boxes = frame_boxes("obj_det_with_motion", frames, detections, params)
    appearance = remove_covered(filter_detections(detections, params.score_thr, params.min_area), params.cover_thr)
    np.testing.assert_array_equal(boxes[:len(appearance)], appearance)
