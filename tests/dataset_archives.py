"""Small archives with the member structure of the official ones, made from the synthetic dataset.

    UCSD_Anomaly_Dataset.tar.gz  UCSD_Anomaly_Dataset.v1p2/UCSDped{1,2}/{Train,Test}/<video>/NNN.tif,
                                 Test/<video>_gt/frameNNN.bmp, Test/UCSDped2.m (and a Mac's ._ file)
    Avenue_Dataset.zip           Avenue Dataset/{training,testing}_videos/NN.avi, {training,testing}_vol/volNN.mat
    ground_truth_demo.zip        ground_truth_demo/testing_label_mask/N_label.mat (volLabel: 1 x T cell of masks),
                                 Readme.txt, ground_truth_show.m
    shanghaitech.tar.gz          shanghaitech/training/videos/SS_NNN.avi, testing/frames/SS_NNNN/NNN.jpg,
                                 testing/test_frame_mask/SS_NNNN.npy (0/1 a frame),
                                 testing/test_pixel_mask/SS_NNNN.npy (T x H x W, 0/1)

Videos are FFV1 (lossless), so the frames a preparation decodes can be compared with the
frames that went in, exactly.
"""
from __future__ import annotations

import io
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.io import savemat

from utils.datasets import generate_synthetic


@dataclass
class Clips:
    """The synthetic dataset's videos: frame files and frames (BGR), and the test videos' masks (0/255)."""

    root: Path
    train: dict[int, list[Path]]
    test: dict[int, list[Path]]
    masks: dict[int, list[Path]]

    def frames(self, files: list[Path]) -> list[np.ndarray]:
        return [cv2.imread(str(f)) for f in files]


def synthetic_clips(root: Path, n_train: int = 3, n_test: int = 3, n_frames: int = 12, seed: int = 5) -> Clips:
    generate_synthetic(root, seed=seed, n_train=n_train, n_test=n_test, n_frames=n_frames, progress=False)

    def files(folder: Path, suffix: str) -> list[Path]:
        return sorted(folder.glob("*" + suffix))

    return Clips(root,
                 {v: files(root / "Train" / f"Train{v:03d}", ".tif") for v in range(1, n_train + 1)},
                 {v: files(root / "Test" / f"Test{v:03d}", ".tif") for v in range(1, n_test + 1)},
                 {v: files(root / "Test" / f"Test{v:03d}_gt", ".bmp") for v in range(1, n_test + 1)})


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 25, (width, height))
    assert writer.isOpened(), "OpenCV cannot write FFV1 videos here"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def _tar_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _mat_bytes(variables: dict) -> bytes:
    buffer = io.BytesIO()
    savemat(buffer, variables)
    return buffer.getvalue()


def ucsd_archive(clips: Clips, out: Path, *, leave_out: tuple[str, ...] = ()) -> Path:
    top = "UCSD_Anomaly_Dataset.v1p2/"
    with tarfile.open(out, "w:gz") as tar:
        _tar_bytes(tar, top + "UCSDped1/Train/Train001/001.tif", clips.train[1][0].read_bytes())
        _tar_bytes(tar, top + "UCSDped1/Test/UCSDped1.m", b"% Ped1's ground truth\n")
        for split, videos in (("Train", clips.train), ("Test", clips.test)):
            for v, files in videos.items():
                name = f"{split}{v:03d}"
                if name in leave_out:
                    continue
                for f in files:
                    tar.add(f, arcname=f"{top}UCSDped2/{split}/{name}/{f.name}")
                if split == "Test":
                    for m in clips.masks[v]:
                        tar.add(m, arcname=f"{top}UCSDped2/Test/{name}_gt/{m.name}")
        _tar_bytes(tar, top + "UCSDped2/Train/Train001/._001.tif", b"\x00\x05\x16\x07 Mac resource fork")
        _tar_bytes(tar, top + "UCSDped2/Test/UCSDped2.m", b"% Ped2's ground truth\n")
    return out


def avenue_archives(clips: Clips, folder: Path, *, short_gt: int | None = None,
                    leave_out_test: tuple[int, ...] = ()) -> tuple[Path, Path]:
    """(Avenue_Dataset.zip, ground_truth_demo.zip); `short_gt` = a test video whose label file
    has one frame fewer than the video; `leave_out_test` = test videos (and labels) left out."""
    folder.mkdir(parents=True, exist_ok=True)
    dataset, ground_truth = folder / "Avenue_Dataset.zip", folder / "ground_truth_demo.zip"
    videos = folder / "videos"
    videos.mkdir(exist_ok=True)
    with zipfile.ZipFile(dataset, "w") as archive:
        for split, clips_of in (("training", clips.train), ("testing", clips.test)):
            for v, files in clips_of.items():
                if split == "testing" and v in leave_out_test:
                    continue
                video = write_video(videos / f"{split}_{v:02d}.avi", clips.frames(files))
                archive.write(video, f"Avenue Dataset/{split}_videos/{v:02d}.avi")
                archive.writestr(f"Avenue Dataset/{split}_vol/vol{v:02d}.mat", _mat_bytes({"vol": np.zeros((2, 2, 1))}))
    with zipfile.ZipFile(ground_truth, "w") as archive:
        for v, masks in clips.masks.items():
            if v in leave_out_test:
                continue
            kept = masks[:-1] if v == short_gt else masks
            cell = np.empty((1, len(kept)), dtype=object)
            for t, m in enumerate(kept):
                cell[0, t] = (cv2.imread(str(m), cv2.IMREAD_GRAYSCALE) > 0).astype(np.uint8)
            archive.writestr(f"ground_truth_demo/testing_label_mask/{v}_label.mat", _mat_bytes({"volLabel": cell}))
        archive.writestr("ground_truth_demo/Readme.txt", "Avenue's ground truth\n")
        archive.writestr("ground_truth_demo/ground_truth_show.m", "% show the masks\n")
    return dataset, ground_truth


SHANGHAITECH_TEST = {1: "01_0014", 2: "01_0015", 3: "02_0128"}


def shanghaitech_archive(clips: Clips, out: Path, *, short_pixel_mask: str | None = None) -> Path:
    """The test video 01_0015's frames are named 0.jpg, 1.jpg, … 11.jpg (a name order that is not the
    frame order); the others 000.jpg … as in the official archive."""
    videos = out.parent / "st_videos"
    videos.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as tar:
        for v, files in clips.train.items():
            video = write_video(videos / f"01_{v:03d}.avi", clips.frames(files))
            tar.add(video, arcname=f"shanghaitech/training/videos/01_{v:03d}.avi")
        for v, files in clips.test.items():
            name = SHANGHAITECH_TEST[v]
            for t, frame in enumerate(clips.frames(files)):
                frame_name = f"{t}.jpg" if name == "01_0015" else f"{t:03d}.jpg"
                _tar_bytes(tar, f"shanghaitech/testing/frames/{name}/{frame_name}",
                           cv2.imencode(".jpg", frame)[1].tobytes())
            masks = np.stack([(cv2.imread(str(m), cv2.IMREAD_GRAYSCALE) > 0).astype(np.uint8)
                              for m in clips.masks[v]])
            labels = masks.reshape(len(masks), -1).max(axis=1).astype(np.int64)
            if name == short_pixel_mask:
                masks = masks[:-1]
            for folder, array in (("test_frame_mask", labels), ("test_pixel_mask", masks)):
                buffer = io.BytesIO()
                np.save(buffer, array)
                _tar_bytes(tar, f"shanghaitech/testing/{folder}/{name}.npy", buffer.getvalue())
    return out
