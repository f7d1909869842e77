"""`test.py --video PATH …` (score_videos) and `train.py --videos DIR` (train_on_videos).

Each video is decoded ONCE into lossless PNGs (source.py); then the very stages
`utils/stages.py` runs on a benchmark's split (flow → boxes → cubes → scoring, or →
training) run on a VideoSplit over those frames, with the configured dataset's settings,
through a copy of the RunConfig that points into the video's own work folder
(derived.py). A source's folders are named by its clean name and a digest of its path
(`clip-1a2b3c4d`), so two videos called alike never share one; a run holds its work
folders' locks (utils/infra/run_lock.py) while it works.

    results/videos/<key>/   frame_scores.csv, frame_scores.png, annotated.mp4, video.json,
                            metrics.json (with labels)

Frames are reused while the source's content (SHA-256) is unchanged; flow while the frames
and flow settings are unchanged (per file, so an interrupted run resumes); boxes while
frames and box settings are unchanged; cubes as for a benchmark. The model comes from the
ORIGINAL config's work_dir and dataset_name, or from `--model DIR`.
"""
from __future__ import annotations

import json
import math
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from utils.config import RunConfig, resolve_device
from utils.datasets.split import VideoSplit
from utils.infra.errors import VECError
from utils.infra.io import atomic_dir, seed_everything, write_json
from utils.metrics import frame_auroc
from utils.own_video.derived import refresh_derived, video_config
from utils.own_video.labels import check_label_counts, read_labels
from utils.own_video.model import load_video_model
from utils.own_video.outputs import normalise_scores, write_annotated_video, write_frame_scores_csv
from utils.own_video.source import (MAX_FPS, MIN_FPS, VideoSource, extract_frames, folder_key, probe_source,
                                    video_split)
from utils.stages import boxes_of_split, compute_flow, cubes_of_split, train_on_split
from utils.report.plots import plot_video_scores
from utils.infra.run_lock import lock_file, run_lock
from utils.scoring import NO_BOX_SCORE, frame_scores, score_cubes

VIDEOS_FOLDER = "videos"  # data/videos/<key>/ (work) and results/videos/<key>/ (results)
VIDEO_SETS_FOLDER = "video_sets"  # data/video_sets/<set key>/: train.py --videos
DEFAULT_FPS = 25.0


def check_frame_rate(fps: float | None) -> float:
    """`--fps`: a finite number of frames per second that a video can be written with."""
    if fps is None:
        return DEFAULT_FPS
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and MIN_FPS <= fps <= MAX_FPS):
        raise VECError(f"--fps {fps} is not a frame rate: give a number from {MIN_FPS:g} to {MAX_FPS:g} "
                       "(frames per second)")
    return float(fps)


def work_lock(dataset_dir: Path):
    """The lock of a video's (or video set's) work folder: the one the pipeline's stages take for it."""
    return run_lock(lock_file(dataset_dir, Path(dataset_dir).name))


def _distinct(sources: list[VideoSource]) -> None:
    seen: dict[str, Path] = {}
    for source in sources:
        if source.key in seen:
            raise VECError(f"{source.path} is given twice; pass each video once")
        seen[source.key] = source.path


def _prepare(cfg: RunConfig, dataset_dir: Path, sources: list[VideoSource], split_name: str, accept_short: bool,
             progress: bool) -> tuple[RunConfig, VideoSplit, list[dict]]:
    """Decode (or reuse) the frames of `sources` into dataset_dir/frames/<key>/ and refresh what derives from them."""
    infos = []
    for source in sources:
        frames_dir = dataset_dir / "frames" / source.key
        info, extracted = extract_frames(source, frames_dir, cfg.cloze.tot_raw_num, accept_short, progress)
        if not extracted:
            print(f"frames: reusing {frames_dir} ({source.path} is unchanged)")
        infos.append(info)
    reuse_boxes = refresh_derived(cfg, dataset_dir, split_name, {s.key: i["source"] for s, i in zip(sources, infos)})
    return (video_config(cfg, dataset_dir, reuse_boxes), video_split(dataset_dir, [s.key for s in sources], split_name),
            infos)


def score_videos(cfg: RunConfig, paths: list[Path], model_dir: Path | None = None,
                 labels: list[Path] | None = None, fps: float | None = None, accept_short_video: bool = False,
                 progress: bool = True) -> list[dict]:
    """Score each video of `paths` with the trained model and write results/videos/<key>/.

    paths: video files or folders of frames; model_dir: another run's model folder (None:
    the configured dataset's model); labels: one 0/1-per-frame file per video (for AUROC);
    fps: the frame rate of frame folders (default 25; a video file's own rate wins);
    accept_short_video: score a video that decodes to fewer frames than its container
    declares (recorded in the results). Returns one summary per video. All inputs are
    checked before any work; a video's results folder appears only once complete.
    """
    if labels is not None and len(labels) != len(paths):
        raise VECError(f"--labels got {len(labels)} files for {len(paths)} videos; "
                       "give one per video, in the same order")
    fps = check_frame_rate(fps)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    sources = [probe_source(Path(p), cfg.cloze.tot_raw_num) for p in paths]
    _distinct(sources)
    label_files = [Path(f) for f in labels] if labels is not None else []
    label_values = [read_labels(f) for f in label_files]
    check_label_counts(label_values, label_files, [len(s.frame_files) if s.is_folder else None for s in sources],
                       [s.path for s in sources])
    trained, model_where = load_video_model(cfg, model_dir)
    print(f"model: {model_where}")

    dataset_dirs = [cfg.data_root_dir / VIDEOS_FOLDER / source.key for source in sources]
    with ExitStack() as locks:
        for dataset_dir in dataset_dirs:  # all of them before any work: a busy one stops the run at once
            locks.enter_context(work_lock(dataset_dir))
        prepared = [_prepare(cfg, dataset_dir, [source], "test", accept_short_video, progress)
                    for source, dataset_dir in zip(sources, dataset_dirs)]
        check_label_counts(label_values, label_files, [info[0]["n_frames"] for _, _, info in prepared],
                           [s.path for s in sources])
        summaries = []
        for n, (source, (vcfg, split, (info,))) in enumerate(zip(sources, prepared)):
            summaries.append(_score_one(cfg, vcfg, split, source, info, trained, model_where, device,
                                        label_values[n] if label_values else None,
                                        label_files[n] if label_files else None, info["fps"] or fps, progress))
    return summaries


def _score_one(cfg: RunConfig, vcfg: RunConfig, split: VideoSplit, source: VideoSource, info: dict, trained,
               model_where: str, device: str, frame_labels: np.ndarray | None, label_file: Path | None, rate: float,
               progress: bool) -> dict:
    compute_flow(vcfg, split, device)
    store = cubes_of_split(vcfg, split, boxes_of_split(vcfg, split, device))
    cube_scores = score_cubes(store, trained, cfg.cloze, device, progress=progress)
    scores = frame_scores(len(split), (info["height"], info["width"]), store.frame_index, store.boxes, cube_scores)
    normalised, low, high = normalise_scores(scores)
    cube_normalised = np.clip((cube_scores - low) / (high - low), 0, 1) if high > low else np.zeros(len(store))

    summary = {"video": str(source.path), "name": source.name, "sha256": info["source"]["sha256"],
               "n_frames": len(split), "declared_frames": info["declared_frames"],
               "short_video_accepted": bool(info.get("short")), "fps": rate, "width": info["width"],
               "height": info["height"], "n_cubes": len(store),
               "n_frames_with_boxes": int(np.sum(scores > NO_BOX_SCORE)), "model": model_where}
    if frame_labels is not None:
        summary.update(_auroc(scores, frame_labels), labels=str(label_file))
    if summary["n_frames_with_boxes"]:
        top = int(np.argmax(scores))
        summary.update(top_frame=top, top_time_s=top / rate, top_score=float(scores[top]))
    out = cfg.results_dir / VIDEOS_FOLDER / source.key
    earlier = _read_json(out / "video.json")
    if earlier is not None and earlier.get("sha256") != summary["sha256"]:
        print(f"{out}: replacing the results of an earlier version of {source.path} (other content, "
              f"SHA-256 {str(earlier.get('sha256'))[:12]}…)")
    with atomic_dir(out) as partial:
        write_frame_scores_csv(partial / "frame_scores.csv", scores, normalised, rate)
        title = f"VEC on {source.name} (model {Path(model_where).name})"
        if summary.get("auroc") is not None:
            title += f": AUROC {summary['auroc']:.3f}"
        plot_video_scores(partial / "frame_scores.png", scores, frame_labels, title, fps=rate)
        write_annotated_video(partial / "annotated.mp4", split.frame_paths, rate, normalised, store.frame_index,
                              store.boxes, cube_normalised, progress)
        write_json(partial / "video.json", summary)
        if frame_labels is not None:
            write_json(partial / "metrics.json", summary)
    summary["results_dir"] = str(out)
    return summary


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _auroc(scores: np.ndarray, labels: np.ndarray) -> dict:
    """Frame-level AUROC and EER as for a benchmark (frames without a box keep the score -100000);
    None when the labels hold one class only."""
    n_anomalous = int(labels.sum())
    if n_anomalous in (0, len(labels)):
        return {"auroc": None, "eer": None, "n_anomalous_frames": n_anomalous}
    auroc, eer_fpr, eer_fnr = frame_auroc(scores, labels)
    return {"auroc": auroc, "eer": (eer_fpr + eer_fnr) / 2, "n_anomalous_frames": n_anomalous}


def train_on_videos(cfg: RunConfig, folder: Path, accept_short_video: bool = False, progress: bool = True) -> dict:
    """Train on the normal videos directly inside `folder` (video files and folders of frames;
    names starting with '.' are skipped), one video per entry, with the configured dataset's
    settings. The model is saved as train_on_split saves it, under the dataset name
    <set key> = folder_key(folder), in data/video_sets/<set key>/raw2flow/ (pass that to `test.py --model`).
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
    _distinct(sources)
    set_key = folder_key(folder)
    dataset_dir = cfg.data_root_dir / VIDEO_SETS_FOLDER / set_key
    with work_lock(dataset_dir):
        vcfg, split, infos = _prepare(cfg, dataset_dir, sources, "train", accept_short_video, progress)
        for source, info in zip(sources[1:], infos[1:]):
            if (info["width"], info["height"]) != (infos[0]["width"], infos[0]["height"]):
                raise VECError(f"{source.path} is {info['width']}x{info['height']} but {sources[0].path} is "
                               f"{infos[0]['width']}x{infos[0]['height']}; the videos of a training set must share "
                               "one size")
        compute_flow(vcfg, split, device)
        summary = train_on_split(vcfg, split)
    summary.update(name=set_key, model_dir=str(vcfg.work_dir), n_videos=len(sources),
                   short_videos_accepted=[str(s.path) for s, i in zip(sources, infos) if i.get("short")])
    return summary
