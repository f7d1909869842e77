"""Your own videos through VEC's pipeline: `test.py --video PATH …` and `train.py --videos DIR`.

Each video (a file OpenCV decodes, or a folder of frames) is decoded ONCE, frame by frame,
into lossless PNGs; then the very stages `utils/pipeline.py` runs on a benchmark's split
(flow → boxes → cubes → scoring, or → training) run on a VideoSplit over those frames,
with the configured dataset's settings (flow_method, box thresholds, patch size, cloze
settings). The stages find their folders through a copy of the RunConfig
(`video_config`) that points into the video's own work folder:

    data/videos/<name>/                    one scored video (name = file stem or folder name)
        frames/<name>/00000000.png …       its frames, + source.json (fingerprint, fps, size)
        derived.json                       the settings the flow and boxes below were made with
        optical_flow/<name>/frames/<name>/00000000.npy …
        bboxes_test_<mode>.npy
        raw2flow/<name>_cubes_test_<mode>/ (memory-mapped cubes)
    data/video_sets/<set>/                 one `train.py --videos DIR` (set = DIR's name)
        frames/<entry>/…, derived.json, optical_flow/…, bboxes_train_<mode>.npy,
        raw2flow/<set>_cubes_train_<mode>/
        raw2flow/<set>_model_<mode>_SelfComplete.npy, …training_scores…   (the trained model)
    results/videos/<name>/                 frame_scores.csv, frame_scores.png, annotated.mp4,
                                           metrics.json (with --labels)

Frames are reused while the source's fingerprint (path, size, mtime) is unchanged; flow
files while the frames and the flow settings are unchanged (per file, so an interrupted
run resumes); boxes while frames and box settings are unchanged; cubes as for a
benchmark (same settings, same boxes). The model comes from the ORIGINAL config's
work_dir and dataset_name, or from `--model DIR`.

Memory does not grow with a video's length: decoding, flow, boxes, cubes (memory-mapped)
and the annotated video all stream; what grows is a few numbers per frame and per cube.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from utils.config import RunConfig, resolve_device
from utils.datasets.split import VideoSplit
from utils.errors import VECError
from utils.foreground import box_file_path
from utils.io import atomic_dir, seed_everything, write_json
from utils.metrics import frame_auroc
from utils.pipeline import boxes_of_split, compute_flow, cubes_of_split, precision_settings, run_training
from utils.scoring import NO_BOX_SCORE, frame_scores, score_cubes
from utils.training import TrainedBlocks, load_trained, make_network
from utils.videos import (VideoSource, extract_frames, normalise_scores, plot_video_scores, probe_source,
                          read_labels, video_name, video_split, write_annotated_video, write_frame_scores_csv)

VIDEOS_FOLDER = "videos"  # data/videos/<name>/ (work) and results/videos/<name>/ (results)
VIDEO_SETS_FOLDER = "video_sets"  # data/video_sets/<set>/: train.py --videos


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


def _derived_settings(cfg: RunConfig, fingerprints: dict) -> dict:
    ds = cfg.dataset
    return {"frames": fingerprints,
            "flow": {"flow_method": ds.flow_method, "flownet2_checkpoint": str(ds.flownet2_checkpoint),
                     "raft_weights": str(ds.raft_weights), **precision_settings(cfg, "flow_precision")},
            "boxes": {"mode": cfg.foreground_extraction_mode, "detector": ds.detector,
                      "detector_checkpoint": str(ds.detector_checkpoint), "detector_config": str(ds.detector_config),
                      **asdict(ds.boxes), **precision_settings(cfg, "detector_precision")}}


def refresh_derived(cfg: RunConfig, dataset_dir: Path, split_name: str, fingerprints: dict) -> bool:
    """Delete what the frames or settings no longer match; returns whether the saved boxes are reusable.

    `fingerprints`: video → source fingerprint. Flow of a re-decoded video (or all flow,
    when the flow settings changed) is deleted; boxes unless frames and box settings are
    unchanged; cubes when frames or flow changed (cubes_of_split checks the rest).
    """
    dataset_dir = Path(dataset_dir)
    vcfg = video_config(cfg, dataset_dir, False)
    stamp = dataset_dir / "derived.json"
    want = _derived_settings(cfg, fingerprints)
    try:
        old = json.loads(stamp.read_text())
    except (OSError, ValueError):
        old = None
    flow_changed = old is None or old.get("flow") != want["flow"]
    if flow_changed:
        shutil.rmtree(vcfg.flow_dir, ignore_errors=True)
    else:
        for video, fingerprint in fingerprints.items():
            if old.get("frames", {}).get(video) != fingerprint:
                shutil.rmtree(vcfg.flow_dir / "frames" / video, ignore_errors=True)
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


def _prepare(cfg: RunConfig, dataset_dir: Path, sources: list[VideoSource], split_name: str,
             progress: bool) -> tuple[RunConfig, VideoSplit, list[dict]]:
    """Decode (or reuse) the frames of `sources` into dataset_dir/frames/<name>/ and refresh what derives from them."""
    infos = [extract_frames(s, dataset_dir / "frames" / s.name, cfg.cloze.tot_raw_num, progress) for s in sources]
    for (info, extracted), source in zip(infos, sources):
        if not extracted:
            print(f"frames: reusing {dataset_dir / 'frames' / source.name} ({source.path} is unchanged)")
    infos = [info for info, _ in infos]
    reuse_boxes = refresh_derived(cfg, dataset_dir, split_name, {s.name: i["source"] for s, i in zip(sources, infos)})
    return video_config(cfg, dataset_dir, reuse_boxes), video_split(dataset_dir, [s.name for s in sources],
                                                                   split_name), infos


def _unique_names(sources: list[VideoSource]) -> None:
    seen: dict[str, Path] = {}
    for source in sources:
        if source.name in seen:
            raise VECError(f"{seen[source.name]} and {source.path} would share the name {source.name!r} "
                           "(their file stem or folder name); rename one of them")
        seen[source.name] = source.path


def find_model(model_dir: Path, preferred: str, mode: str, method: str, modality: str) -> tuple[Path, str]:
    """(folder, dataset name) of the trained model in `model_dir` (or in `model_dir/<modality>`).

    Model files are `<dataset>_model_<mode>_<method>.npy`; the configured dataset's is taken
    when there, else the folder's only one.
    """
    model_dir = Path(model_dir).expanduser()
    if not model_dir.is_dir():
        raise VECError(f"--model {model_dir} is not a folder; pass the folder holding a run's trained model files "
                       "(such as data/raw2flow or data/video_sets/<set>/raw2flow)")
    suffix = f"_model_{mode}_{method}.npy"
    names, folder = [], model_dir
    for folder in (model_dir, model_dir / modality):
        names = sorted(p.name[:-len(suffix)] for p in folder.glob("*" + suffix)) if folder.is_dir() else []
        if names:
            break
    if not names:
        raise VECError(f"--model {model_dir} holds no trained model (*{suffix}); train one with `python train.py` "
                       "or `python train.py --videos DIR`")
    if preferred in names:
        return folder, preferred
    if len(names) > 1:
        raise VECError(f"--model {folder} holds the models of several datasets ({', '.join(names)}) and none is "
                       f"the configured {preferred}; pass a folder holding one of them")
    return folder, names[0]


def load_video_model(cfg: RunConfig, model_dir: Path | None) -> tuple[TrainedBlocks, str]:
    """The trained model for `cfg` (its work_dir and dataset_name), or the one in `model_dir`;
    checked against the configured cloze settings and blocks. Returns (model, where it came from)."""
    mode, method = cfg.foreground_extraction_mode, cfg.method
    if model_dir is None:
        folder, name, scene_level = cfg.work_dir, cfg.dataset_name, cfg.dataset.scene_level
    else:
        folder, name = find_model(model_dir, cfg.dataset_name, mode, method, cfg.modality)
        # ShanghaiTech's files have an outer scene list (the reference's); a video set's never do.
        scene_level = cfg.dataset.scene_level if name == cfg.dataset_name else name == "ShanghaiTech"
    trained = load_trained(folder, name, mode, method, scene_level=scene_level)
    where = f"{folder}/{name}_model_{mode}_{method}.npy"
    ds = cfg.dataset
    if len(trained.states) != ds.h_block or any(len(row) != ds.w_block for row in trained.states):
        raise VECError(f"{where} has {len(trained.states)}x{len(trained.states[0])} blocks but [{cfg.dataset_name}] "
                       f"sets h_block = {ds.h_block}, w_block = {ds.w_block}; score with the config it was trained with")
    state = next((s for row in trained.states for s in row if s is not None), None)
    if state is None:
        raise VECError(f"{where} holds no trained network (every block had too few training cubes)")
    try:
        make_network(cfg.cloze).load_state_dict(state)
    except RuntimeError:
        raise VECError(f"{where} does not fit the cloze settings of [{cfg.dataset_name}] (nf = {cfg.cloze.nf}, "
                       f"context_of_num = {cfg.cloze.context_of_num}, use_flow = {cfg.cloze.use_flow}); "
                       "score with the config it was trained with") from None
    return trained, where


def _check_labels(labels: list[np.ndarray], label_files: list[Path], counts: list[int | None],
                  sources: list[VideoSource]) -> None:
    for values, file, count, source in zip(labels, label_files, counts, sources):
        if count is not None and len(values) != count:
            raise VECError(f"labels file {file} has {len(values)} entries but {source.path} has {count} frames; "
                           "give one 0/1 per frame")


def score_videos(cfg: RunConfig, paths: list[Path], model_dir: Path | None = None,
                 labels: list[Path] | None = None, fps: float = 25.0, progress: bool = True) -> list[dict]:
    """Score each video of `paths` with the trained model and write results/videos/<name>/.

    paths: video files or folders of frames; model_dir: another run's model folder (None:
    the configured dataset's model); labels: one 0/1-per-frame file per video (for AUROC);
    fps: the frame rate of frame folders (a video file's own rate wins). Returns one summary
    per video. All inputs are checked before any work; a video's results folder appears only
    once complete.
    """
    if labels is not None and len(labels) != len(paths):
        raise VECError(f"--labels got {len(labels)} files for {len(paths)} videos; give one per video, in the same order")
    if not fps > 0:
        raise VECError(f"--fps {fps} must be positive")
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    sources = [probe_source(Path(p), cfg.cloze.tot_raw_num) for p in paths]
    _unique_names(sources)
    label_files = [Path(f) for f in labels] if labels is not None else []
    label_values = [read_labels(f) for f in label_files]
    _check_labels(label_values, label_files, [len(s.frame_files) if s.is_folder else None for s in sources], sources)
    trained, model_where = load_video_model(cfg, model_dir)
    print(f"model: {model_where}")

    prepared = []
    for source in sources:
        dataset_dir = cfg.data_root_dir / VIDEOS_FOLDER / source.name
        prepared.append(_prepare(cfg, dataset_dir, [source], "test", progress))
    _check_labels(label_values, label_files, [info[0]["n_frames"] for _, _, info in prepared], sources)

    summaries = []
    for n, (source, (vcfg, split, (info,))) in enumerate(zip(sources, prepared)):
        rate = info["fps"] or fps
        compute_flow(vcfg, split, device)
        store = cubes_of_split(vcfg, split, boxes_of_split(vcfg, split, device))
        cube_scores = score_cubes(store, trained, cfg.cloze, device, progress=progress)
        scores = frame_scores(len(split), (info["height"], info["width"]), store.frame_index, store.boxes, cube_scores)
        normalised, low, high = normalise_scores(scores)
        cube_normalised = np.clip((cube_scores - low) / (high - low), 0, 1) if high > low else np.zeros(len(store))
        frame_labels = label_values[n] if label_values else None

        summary = {"video": str(source.path), "name": source.name, "n_frames": len(split), "fps": rate,
                   "width": info["width"], "height": info["height"], "n_cubes": len(store),
                   "n_frames_with_boxes": int(np.sum(scores > NO_BOX_SCORE)), "model": model_where}
        if frame_labels is not None:
            summary.update(_auroc(scores, frame_labels))
        out = cfg.results_dir / VIDEOS_FOLDER / source.name
        with atomic_dir(out) as partial:
            write_frame_scores_csv(partial / "frame_scores.csv", scores, normalised, rate)
            title = f"VEC on {source.name} (model {Path(model_where).name})"
            if summary.get("auroc") is not None:
                title += f": AUROC {summary['auroc']:.3f}"
            plot_video_scores(partial / "frame_scores.png", scores, rate, frame_labels, title)
            write_annotated_video(partial / "annotated.mp4", split.frame_paths, rate, normalised, store.frame_index,
                                  store.boxes, cube_normalised, progress)
            if frame_labels is not None:
                write_json(partial / "metrics.json", {**summary, "labels": str(label_files[n])})
        if summary["n_frames_with_boxes"]:
            top = int(np.argmax(scores))
            summary.update(top_frame=top, top_time_s=top / rate, top_score=float(scores[top]))
        summary["results_dir"] = str(out)
        summaries.append(summary)
    return summaries


def _auroc(scores: np.ndarray, labels: np.ndarray) -> dict:
    """Frame-level AUROC and EER as for a benchmark (frames without a box keep the score -100000);
    None when the labels hold one class only."""
    n_anomalous = int(labels.sum())
    if n_anomalous in (0, len(labels)):
        return {"auroc": None, "eer": None, "n_anomalous_frames": n_anomalous}
    auroc, eer_fpr, eer_fnr = frame_auroc(scores, labels)
    return {"auroc": auroc, "eer": (eer_fpr + eer_fnr) / 2, "n_anomalous_frames": n_anomalous}


def train_on_videos(cfg: RunConfig, folder: Path, progress: bool = True) -> dict:
    """Train on the normal videos directly inside `folder` (video files and folders of frames;
    names starting with '.' are skipped), one video per entry, with the configured dataset's
    settings. The model is saved as run_training saves it, under the dataset name
    <set> = the folder's name, in data/video_sets/<set>/raw2flow/ (pass that to `test.py --model`).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise VECError(f"--videos {folder} is not a folder; put your normal videos (files or folders of frames) "
                       "into one folder and pass it")
    entries = sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)
    if not entries:
        raise VECError(f"--videos {folder} is empty; put your normal videos (files or folders of frames) into it")
    device = resolve_device(cfg.device)
    sources = [probe_source(p, cfg.cloze.tot_raw_num) for p in entries]
    _unique_names(sources)
    set_name = video_name(folder.resolve())
    dataset_dir = cfg.data_root_dir / VIDEO_SETS_FOLDER / set_name
    vcfg, split, infos = _prepare(cfg, dataset_dir, sources, "train", progress)
    for source, info in zip(sources[1:], infos[1:]):
        if (info["width"], info["height"]) != (infos[0]["width"], infos[0]["height"]):
            raise VECError(f"{source.path} is {info['width']}x{info['height']} but {sources[0].path} is "
                           f"{infos[0]['width']}x{infos[0]['height']}; the videos of a training set must share one size")
    compute_flow(vcfg, split, device)
    summary = run_training(vcfg, split)
    summary.update(name=set_name, model_dir=str(vcfg.work_dir), n_videos=len(sources))
    return summary
