"""Foreground boxes (stage 2): where the video events are.

    frame.py       one frame: detections filtered, covered boxes removed, motion boxes added
    detectors.py   the appearance detectors (Cascade R-CNN, MMDetection)
    split.py       every frame of a split, batched; reuses a saved box file
    box_files.py   the reference's box-file format
"""
from utils.foreground.box_files import box_file_path, load_box_file, save_box_file
from utils.foreground.detectors import CascadeRCNNDetector, MMDetDetector, build_detector, load_cascade_rcnn
from utils.foreground.frame import (MODES_WITH_DETECTOR, filter_detections, frame_box, frame_boxes, motion_boxes,
                                    patch_grid, remove_covered)
from utils.foreground.split import compute_split_boxes, split_boxes

__all__ = ["filter_detections", "remove_covered", "motion_boxes", "patch_grid", "frame_box", "frame_boxes",
           "MODES_WITH_DETECTOR", "compute_split_boxes", "split_boxes", "box_file_path", "load_box_file",
           "save_box_file", "build_detector", "CascadeRCNNDetector", "MMDetDetector", "load_cascade_rcnn"]
