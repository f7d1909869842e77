"""A video's work folder as a dataset: the RunConfig that points the pipeline's stages into it, and
`derived.json`, which says what its flow, boxes and cubes were made from.

    data/videos/<key>/                     one scored video (key = clean name + digest of its path)
        .<key>.lock                        while a run works here (utils/infra/run_lock.py)
        frames/<key>/00000000.png …        its frames, + source.json (identity, counts, fps, size)
        derived.json                       the sources and settings the flow and boxes below were made from
        optical_flow/<key>/frames/<key>/00000000.npy …
        bboxes_test_<mode>.npy
        raw2flow/<key>_cubes_test_<mode>/  (memory-mapped cubes)
    data/video_sets/<set key>/             one `train.py --videos DIR`: frames/<entry key>/…, the same
        files for the train split, and raw2flow/<set key>_model_<mode>_SelfComplete.npy …
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from utils.config import RunConfig
from utils.foreground import box_file_path
from utils.infra.io import write_json
from utils.fingerprints import box_source_settings, flow_settings

DERIVED_FILE = "derived.json"


def video_config(cfg: RunConfig, dataset_dir: Path, reuse_boxes: bool) -> RunConfig:
    """A copy of `cfg` whose folders point into `dataset_dir` (settings unchanged).

    dataset_dir = <raw_dataset_dir>/<dataset_name>, flow in dataset_dir/optical_flow/<name>/,
    cubes (and a trained model) in dataset_dir/raw2flow/. Cubes are always reusable here:
    cubes_of_split reuses a store only when it was made with the same settings from the same boxes.
    """
    dataset_dir = Path(dataset_dir)
    dataset = replace(cfg.dataset, train_bbox_saved=reuse_boxes, test_bbox_saved=reuse_boxes,
                      train_foreground_saved=True, test_foreground_saved=True)
    return replace(cfg, raw_dataset_dir=dataset_dir.parent, dataset_name=dataset_dir.name,
                   optical_flow_dir=dataset_dir / "optical_flow", data_root_dir=dataset_dir, dataset=dataset)


def _derived_settings(cfg: RunConfig, identities: dict) -> dict:
    return {"frames": identities, "flow": flow_settings(cfg), "boxes": box_source_settings(cfg)}


def refresh_derived(cfg: RunConfig, dataset_dir: Path, split_name: str, identities: dict) -> bool:
    """Delete what the sources or settings no longer match; returns whether the saved boxes are reusable.

    `identities`: video → source identity (path and content digest). Flow of a video whose
    source changed (or all flow, when the flow settings changed) is deleted; boxes unless
    sources and box settings are unchanged; cubes when sources or flow changed
    (cubes_of_split checks the rest).
    """
    dataset_dir = Path(dataset_dir)
    vcfg = video_config(cfg, dataset_dir, False)
    stamp = dataset_dir / DERIVED_FILE
    want = _derived_settings(cfg, identities)
    try:
        old = json.loads(stamp.read_text())
    except (OSError, ValueError):
        old = None
    flow_changed = old is None or old.get("flow") != want["flow"]
    if flow_changed:
        shutil.rmtree(vcfg.flow_dir, ignore_errors=True)
    else:
        for video, identity in identities.items():
            if old.get("frames", {}).get(video) != identity:
                shutil.rmtree(vcfg.flow_dir / "frames" / video, ignore_errors=True)
    for gone in (dataset_dir / "frames").glob("[!.]*"):  # an entry no longer in the set
        if gone.name not in identities:
            shutil.rmtree(gone, ignore_errors=True)
            shutil.rmtree(vcfg.flow_dir / "frames" / gone.name, ignore_errors=True)
    frames_changed = old is None or old.get("frames") != want["frames"]
    if flow_changed or frames_changed:
        for store in vcfg.work_dir.glob(f"{vcfg.dataset_name}_cubes_*"):
            shutil.rmtree(store, ignore_errors=True)
    box_file = box_file_path(dataset_dir, split_name, cfg.foreground_extraction_mode)
    if frames_changed or old.get("boxes") != want["boxes"]:
        box_file.unlink(missing_ok=True)
    if old != want:
        write_json(stamp, want)
    return box_file.is_file()
