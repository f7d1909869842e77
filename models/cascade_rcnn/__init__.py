"""Cascade R-CNN R101-FPN: backbone → FPN → RPN → cascade RoI head, MMDetection's numbers and keys."""
from models.cascade_rcnn.backbone import FeaturePyramid, ResNetBackbone
from models.cascade_rcnn.box_ops import batched_nms, decode_deltas
from models.cascade_rcnn.detector import TEST_SCALE, CascadeRCNN, rescaled_size
from models.cascade_rcnn.roi_heads import NUM_CLASSES, BoxHead, CascadeRoIHead
from models.cascade_rcnn.rpn import RegionProposalHead, grid_anchors

__all__ = ["CascadeRCNN", "ResNetBackbone", "FeaturePyramid", "RegionProposalHead", "CascadeRoIHead", "BoxHead",
           "decode_deltas", "batched_nms", "grid_anchors", "rescaled_size", "TEST_SCALE", "NUM_CLASSES"]
