"""Plots a researcher looks at after `test.py` (frame scores over time, the ROC curve, top frames) and
the score plot of `test.py --video`."""
from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from utils.cubes import ceil_box  # noqa: E402
from utils.infra.io import atomic_file  # noqa: E402
from utils.scoring import NO_BOX_SCORE  # noqa: E402


def plot_frame_scores(path: Path, scores: np.ndarray, labels: np.ndarray | None, frame_video_idx: np.ndarray,
                      video_names: list[str], title: str, max_videos: int = 12) -> None:
    """One panel per test video: the frame score, with ground-truth anomalous frames shaded."""
    videos = np.unique(frame_video_idx)[:max_videos]
    cols = min(3, len(videos))
    rows = -(-len(videos) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.4 * rows), squeeze=False)
    shown = scores[scores > NO_BOX_SCORE]
    low = shown.min() if len(shown) else 0.0
    for ax, video in zip(axes.ravel(), videos):
        frames = np.flatnonzero(frame_video_idx == video)
        values = np.where(scores[frames] > NO_BOX_SCORE, scores[frames], np.nan)  # no box: gap, not -1e5
        if labels is not None:
            ax.fill_between(np.arange(len(frames)), 0, 1, where=labels[frames] > 0, color="tab:red", alpha=0.2,
                            transform=ax.get_xaxis_transform(), label="anomalous (ground truth)")
        ax.plot(values, color="tab:blue", lw=1, label="frame score")
        ax.set_title(video_names[video - 1], fontsize=9)
        ax.set_ylim(bottom=low)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(videos):]:
        ax.axis("off")
    handles, names = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_roc(path: Path, scores: np.ndarray, labels: np.ndarray, auroc: float, title: str) -> None:
    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr, lw=1.5, label=f"AUROC {auroc:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_top_frames(path: Path, frames: list[np.ndarray], boxes: list[np.ndarray], box_scores: list[np.ndarray],
                    masks: list[np.ndarray | None], titles: list[str]) -> None:
    """The highest-scoring frame of some videos: each box drawn with its score (red = the frame's
    maximum), the ground-truth anomaly outlined in green where a pixel mask exists."""
    cols = min(3, len(frames))
    rows = -(-len(frames) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, frame, frame_boxes, scores, mask, title in zip(axes.ravel(), frames, boxes, box_scores, masks, titles):
        canvas = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if mask is not None:
            contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(canvas, contours, -1, (0, 200, 0), 1)
        top = int(np.argmax(scores)) if len(scores) else -1
        for n, (box, score) in enumerate(zip(frame_boxes, scores)):
            x1, y1, x2, y2 = ceil_box(box)
            colour = (230, 30, 30) if n == top else (250, 200, 0)
            cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), colour, 1)
            cv2.putText(canvas, f"{score:.1f}", (x1, max(8, y1 - 2)), cv2.FONT_HERSHEY_PLAIN, 0.7, colour, 1)
        ax.imshow(canvas)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    for ax in axes.ravel()[len(frames):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_results(out: Path, split, store, cube_scores: np.ndarray, scores: np.ndarray, auroc: float, title: str,
                 max_videos: int = 6) -> None:
    """frame_scores.png, roc.png and top_frames.png (each video's highest-scoring frame with its boxes)."""
    plot_frame_scores(out / "frame_scores.png", scores, split.labels, split.frame_video_idx, split.video_names, title)
    plot_roc(out / "roc.png", scores, split.labels, auroc, title)
    frames, boxes, box_scores, masks, titles = [], [], [], [], []
    for video in np.unique(split.frame_video_idx)[:max_videos]:
        members = np.flatnonzero(split.frame_video_idx == video)
        i = int(members[np.argmax(scores[members])])
        mine = store.frame_index == i
        frames.append(split.read_frame(i))
        boxes.append(store.boxes[mine])
        box_scores.append(cube_scores[mine])
        masks.append(cv2.imread(str(split.mask_paths[i]), cv2.IMREAD_GRAYSCALE) if split.mask_paths else None)
        titles.append(f"{split.video_names[video - 1]} frame {i - members[0] + 1}: score {scores[i]:.1f}"
                      f"{' (anomalous)' if split.labels[i] else ''}")
    plot_top_frames(out / "top_frames.png", frames, boxes, box_scores, masks, titles)


def plot_video_scores(path: Path, scores: np.ndarray, labels: np.ndarray | None, title: str,
                      fps: float | None = None) -> None:
    """One video's frame score over time: seconds when `fps` is given (your own videos), else frame
    numbers (a benchmark's report). Frames without a box are gaps; anomalous frames of `labels` shaded."""
    scores = np.asarray(scores, dtype=np.float64)
    times = np.arange(len(scores)) / fps if fps else np.arange(len(scores), dtype=np.float64)
    values = np.where(scores > NO_BOX_SCORE, scores, np.nan)  # no box: a gap, not -1e5
    fig, ax = plt.subplots(figsize=(8, 2.6))
    if labels is not None:
        ax.fill_between(times, 0, 1, where=np.asarray(labels) > 0, color="tab:red", alpha=0.2, step="mid",
                        transform=ax.get_xaxis_transform(), label="anomalous (ground truth)")
    ax.plot(times, values, color="tab:blue", lw=1, label="frame score")
    ax.set_xlabel("time (s)" if fps else "frame", fontsize=8)
    ax.set_ylabel("anomaly score", fontsize=8)
    step = 1 / fps if fps else 1.0
    ax.set_xlim(0, max(times[-1], step) if len(times) else 1)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def plot_frame_and_heat_map(path: Path, frame: np.ndarray, boxes: np.ndarray, box_scores: np.ndarray,
                            mask: np.ndarray | None, score_map: np.ndarray, title: str) -> None:
    """A frame with its boxes coloured by score (colour bar), and its per-pixel score map beside it;
    the ground-truth anomaly is outlined in green on both."""
    shown = score_map[score_map > NO_BOX_SCORE]
    low, high = (float(shown.min()), float(shown.max())) if len(shown) else (0.0, 1.0)
    high = high if high > low else low + 1.0
    colour_map = plt.get_cmap("turbo")
    canvas = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    contours = []
    if mask is not None:
        contours, _ = cv2.findContours(np.asarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    for box, score in sorted(zip(boxes, box_scores), key=lambda pair: pair[1]):  # highest drawn last
        x1, y1, x2, y2 = ceil_box(box)
        colour = tuple(int(255 * c) for c in colour_map((score - low) / (high - low))[:3])
        cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), colour, 1)
    cv2.drawContours(canvas, contours, -1, (0, 200, 0), 1)
    heat = np.where(score_map > NO_BOX_SCORE, score_map, np.nan)
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.0))
    axes[0].imshow(canvas)
    axes[0].set_title("boxes coloured by score", fontsize=8)
    axes[1].imshow(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cmap="gray")
    image = axes[1].imshow(heat, cmap=colour_map, vmin=low, vmax=high, alpha=0.6)
    for contour in contours:
        axes[1].plot(*np.vstack([contour[:, 0], contour[:1, 0]]).T, color="lime", lw=1)
    axes[1].set_title("pixel score map (max of box scores)", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.colorbar(image, ax=list(axes), fraction=0.025, pad=0.01).ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
