"""A small built-in dataset in the UCSDped2 layout, so the pipeline runs with no download.

A static textured walkway seen from above; pedestrians (textured bodies with swinging
legs) walk left or right along it. Test videos add one anomalous event each, of three
kinds: a fast object (a cyclist), an odd shape (a cart) and a pedestrian walking the
wrong way (across the walkway). Their pixels are the ground-truth masks; the tight box
of each anomalous mover's pixels per frame is the region ground truth
(`region_ground_truth/TestNNN_gt.txt`, format in utils/datasets/regions.py).

Deterministic for a seed; about 10 MB; generated in a few seconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from utils.infra.io import atomic_dir
from utils.datasets.regions import FILE_SUFFIX, REGION_FOLDER, region_line, write_region_file

HEIGHT, WIDTH = 160, 240
# Bumped when the generator writes more files; frames and masks of a seed never change.
VERSION = 2  # 2: region ground truth
ANOMALY_KINDS = ("fast", "cart", "wrong_way")


@dataclass
class _Mover:
    sprites: list[np.ndarray]  # intensity offsets per animation phase, NaN = transparent
    x: float
    y: float
    vx: float
    vy: float
    start: int
    anomalous: bool = False


def _background(rng: np.random.Generator) -> np.ndarray:
    texture = cv2.GaussianBlur(rng.normal(0, 18, (HEIGHT, WIDTH)), (0, 0), 3)
    rows = np.linspace(-15, 15, HEIGHT)[:, None]
    scene = 135 + texture + rows
    for x in range(10, WIDTH, 40):  # paving joints, so the scene has structure to complete
        scene[:, x:x + 1] -= 20
    scene[20:24, :] -= 30  # kerbs of the walkway
    scene[HEIGHT - 24:HEIGHT - 20, :] -= 30
    return scene


def _body(rng: np.random.Generator, height: int, width: int, leg_phases: int = 2) -> list[np.ndarray]:
    """A textured blob with a head and two legs that alternate, darker than the ground."""
    base = rng.uniform(-75, -45)
    texture = np.kron(rng.uniform(-38, 38, ((height + 1) // 2, (width + 1) // 2)), np.ones((2, 2)))[:height, :width]
    yy, xx = np.mgrid[:height, :width]
    torso = ((yy - height * 0.45) / (height * 0.42)) ** 2 + ((xx - (width - 1) / 2) / (width * 0.5)) ** 2 <= 1
    head = ((yy - height * 0.12) ** 2 + (xx - (width - 1) / 2) ** 2) <= (width * 0.3) ** 2
    sprites = []
    leg_rows = slice(int(height * 0.8), height)
    for phase in range(leg_phases):
        shape = torso | head
        legs = np.zeros_like(shape)
        offset = 1 if phase % 2 else -1
        legs[leg_rows, max(0, width // 2 - 2 + offset):width // 2 + offset] = True
        legs[leg_rows, width // 2 + 1 - offset:min(width, width // 2 + 3 - offset)] = True
        sprite = np.where(shape | legs, base + texture, np.nan)
        sprites.append(sprite)
    return sprites


def _cart(rng: np.random.Generator) -> list[np.ndarray]:
    height, width = 16, 26
    sprite = np.full((height, width), rng.uniform(45, 60))
    sprite[2:-2, 2:-2] = rng.uniform(-70, -50)
    sprite[:, ::5] += 25
    return [sprite]


def _walkers(rng: np.random.Generator, n_frames: int, crowd: int) -> list[_Mover]:
    movers = []
    for _ in range(crowd * 3):
        direction = rng.choice([-1.0, 1.0])
        h = int(rng.integers(17, 22))
        sprites = _body(rng, h, int(rng.integers(8, 11)))
        start = int(rng.integers(-60, n_frames))
        x = -12.0 if direction > 0 else float(WIDTH + 2)
        if start < 0:  # already on the walkway when the video starts
            x += direction * rng.uniform(0.7, 1.3) * -start
            start = 0
        movers.append(_Mover(sprites, x, float(rng.integers(26, HEIGHT - 26 - h)), direction * rng.uniform(0.7, 1.3),
                             0.0, start))
    return movers


def _anomaly(rng: np.random.Generator, kind: str, start: int) -> _Mover:
    if kind == "fast":
        sprites = _body(rng, 18, 14)
        return _Mover(sprites, -14.0, float(rng.integers(30, 100)), 4.5, 0.0, start, True)
    if kind == "cart":
        return _Mover(_cart(rng), float(WIDTH + 2), float(rng.integers(30, 110)), -2.0, 0.0, start, True)
    sprites = _body(rng, 20, 9)
    return _Mover(sprites, float(rng.integers(40, WIDTH - 40)), -22.0, 0.0, 3.0, start, True)


def _render(background: np.ndarray, movers: list[_Mover], t: int, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int, int, int]]]:
    """Frame t, its anomaly mask and, per visible anomalous mover, (mover index, x1, y1, x2, y2):
    the tight inclusive box of the mover's pixels in the frame."""
    frame = background.copy()
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    boxes = []
    for index, m in enumerate(movers):
        if t < m.start:
            continue
        age = t - m.start
        sprite = m.sprites[(age // 3) % len(m.sprites)]
        x0, y0 = int(round(m.x + m.vx * age)), int(round(m.y + m.vy * age))
        h, w = sprite.shape
        ys, xs = slice(max(0, y0), min(HEIGHT, y0 + h)), slice(max(0, x0), min(WIDTH, x0 + w))
        if ys.start >= ys.stop or xs.start >= xs.stop:
            continue
        part = sprite[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
        opaque = ~np.isnan(part)
        region = frame[ys, xs]
        region[opaque] = background[ys, xs][opaque] * 0.25 + (135 + part[opaque]) * 0.75
        if m.anomalous:
            mask[ys, xs][opaque] = 255
            rows, cols = np.nonzero(opaque)
            if len(rows):  # no random numbers here: the frames stay those of earlier versions
                boxes.append((index, xs.start + int(cols.min()), ys.start + int(rows.min()),
                              xs.start + int(cols.max()), ys.start + int(rows.max())))
    frame += rng.normal(0, 1.0, frame.shape)  # sensor noise
    return np.clip(frame, 0, 255).astype(np.uint8), mask, boxes


def is_current(root: Path) -> bool:
    """Whether `root` holds a complete dataset written by this version of the generator."""
    marker = Path(root) / ".complete"
    return marker.is_file() and f"version={VERSION}" in marker.read_text()


def generate(root: Path, *, seed: int = 0, n_train: int = 5, n_test: int = 6, n_frames: int = 60,
             crowd: int = 2, progress: bool = True) -> Path:
    """Write the dataset to `root` (UCSDped2 layout) unless it is already complete; returns root."""
    root = Path(root)
    if is_current(root):
        return root
    rng = np.random.default_rng(seed)
    background = _background(rng)
    jobs = [("Train", f"Train{v:03d}", None) for v in range(1, n_train + 1)]
    jobs += [("Test", f"Test{v:03d}", ANOMALY_KINDS[(v - 1) % len(ANOMALY_KINDS)]) for v in range(1, n_test + 1)]
    with atomic_dir(root) as partial:
        for split, name, kind in tqdm(jobs, desc="synthetic dataset", unit="video", disable=not progress):
            movers = _walkers(rng, n_frames, crowd)
            if kind is not None:
                movers.append(_anomaly(rng, kind, int(rng.integers(n_frames // 4, n_frames // 2))))
            video_dir = partial / split / name
            video_dir.mkdir(parents=True)
            if kind is not None:
                (partial / split / f"{name}_gt").mkdir()
            # Track ids count the video's anomalous movers from 0, as in the annotation files.
            track_of = {i: k for k, i in enumerate(i for i, m in enumerate(movers) if m.anomalous)}
            region_lines = []
            for t in range(n_frames):
                frame, mask, boxes = _render(background, movers, t, rng)
                cv2.imwrite(str(video_dir / f"{t + 1:03d}.tif"), frame)
                if kind is not None:
                    cv2.imwrite(str(partial / split / f"{name}_gt" / f"frame{t + 1:03d}.bmp"), mask)
                    region_lines += [region_line(f"{t + 1:03d}.tif", track_of[i], *box) for i, *box in boxes]
            if kind is not None:
                (partial / REGION_FOLDER).mkdir(exist_ok=True)
                write_region_file(partial / REGION_FOLDER / f"{name}{FILE_SUFFIX}", region_lines)
        (partial / ".complete").write_text(f"seed={seed} version={VERSION}\n")
    return root
