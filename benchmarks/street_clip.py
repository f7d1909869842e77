"""OpenCV's street sample, vtest.avi: 795 frames of 768x576 at 10 frames/s, several pedestrians.

    python benchmarks/street_clip.py [--dest DIR]      # prints the clip's path; benchmarks/live.py --clip street

Real footage for the live benchmark that anyone can get: the clip ships inside OpenCV's source
distribution on PyPI (opencv-python-headless 4.14.0.94, the version requirements.txt pins), so
it comes from there through the project's download path (resumable, checked against the SHA-256
PyPI publishes), and the one member is extracted. The 96 MB archive is deleted afterwards.
"""
from __future__ import annotations

import argparse
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.infra.download import download  # noqa: E402
from utils.infra.errors import VECError  # noqa: E402
from utils.infra.io import atomic_file  # noqa: E402

SDIST = "opencv_python_headless-4.14.0.94.tar.gz"
SDIST_URL = ("https://files.pythonhosted.org/packages/67/8a/51ff1c6287be0b6cd3070cf095875da4ff7d6eda38507e6ada5608786a78/"
             + SDIST)
SDIST_SHA256 = "4afa2ea1214453648be88259f035712454faa9039b686de7753569ba8eec1577"
MEMBER = "opencv_python_headless-4.14.0.94/opencv/samples/data/vtest.avi"
CLIP_SIZE = 8_131_690  # bytes of vtest.avi in that archive
DEFAULT_DIR = Path(__file__).resolve().parent / "clips"


def street_clip(folder: Path = DEFAULT_DIR, say=print) -> Path:
    """The path of vtest.avi in `folder`, fetched and extracted on first use."""
    clip = Path(folder) / "vtest.avi"
    if clip.is_file() and clip.stat().st_size == CLIP_SIZE:
        return clip
    archive = Path(folder) / SDIST
    if not archive.is_file():
        download(SDIST_URL, archive, label="OpenCV source (for vtest.avi)", sha256=SDIST_SHA256,
                 manual=f"download {SDIST_URL} by hand and save it as {archive}", say=say)
    with tarfile.open(archive) as tar:
        member = tar.extractfile(MEMBER)
        if member is None:
            raise VECError(f"{archive} holds no {MEMBER}; delete it and run again")
        with atomic_file(clip) as out:
            out.write(member.read())
    archive.unlink()
    return clip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DIR, help=f"folder for the clip (default {DEFAULT_DIR})")
    args = parser.parse_args(argv)
    try:
        print(street_clip(args.dest))
    except VECError as err:
        sys.exit(f"error: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
