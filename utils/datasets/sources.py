"""The three benchmarks as their authors publish them: official archives and published figures.

One entry per dataset of `SOURCES`: each archive's official address, its SHA-256 (the
published values that anomalib's datamodules check), the folders taken from it, and the
videos and frames per split as the papers give them. `python -m utils.datasets` downloads
and prepares a dataset from this table; nothing else in the code repeats these facts.
"""
from __future__ import annotations

from dataclasses import dataclass

# Bytes of a lossless PNG of a video frame, as a share of its raw bytes (H x W x 3): an
# estimate for the free-space check before frames are written, not a measured figure.
PNG_SHARE = 0.5
GB = 10**9


@dataclass(frozen=True)
class Archive:
    """One official archive file.

    `take`: the folders extracted from it, relative to its top folder (nothing else is
    written). `marker`: a folder every copy of the archive holds, relative to the top
    folder; finding it finds the top folder (whatever a repacked copy calls it) and tells
    the archives of a dataset apart. `url` is None where there is no stable public address.
    """

    role: str  # "dataset" or "ground_truth"
    filename: str
    url: str | None
    sha256: str
    page: str  # where a person downloads it by hand
    take: tuple[str, ...]
    marker: str


@dataclass(frozen=True)
class SplitFigures:
    """A split as published: video and frame counts, and the video names where they are listed."""

    videos: int
    frames: int
    names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class DatasetSource:
    name: str  # the dataset_name of config.cfg and the folder below raw_datasets/
    archives: tuple[Archive, ...]
    train: SplitFigures
    test: SplitFigures
    layout_entries: tuple[str, ...]  # the top folders the layout reads (utils/datasets/layouts.py)
    work_bytes: int  # about the disk a preparation needs besides the archives (frames, extracted files)
    citation: str

    def archive(self, role: str) -> Archive:
        return next(a for a in self.archives if a.role == role)

    def figures(self, split: str) -> SplitFigures:
        return self.train if split == "train" else self.test


def _numbered(prefix: str, count: int, width: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i:0{width}d}" for i in range(1, count + 1))


UCSD_PAGE = "http://www.svcl.ucsd.edu/projects/anomaly/dataset.htm"
AVENUE_PAGE = "http://www.cse.cuhk.edu.hk/leojia/projects/detectabnormal/dataset.html"
SHANGHAITECH_PAGE = "https://svip-lab.github.io/dataset/campus_dataset.html"

SOURCES: dict[str, DatasetSource] = {source.name: source for source in (
    DatasetSource(
        name="UCSDped2",
        archives=(Archive(
            role="dataset", filename="UCSD_Anomaly_Dataset.tar.gz",
            url="http://www.svcl.ucsd.edu/projects/anomaly/UCSD_Anomaly_Dataset.tar.gz",
            sha256="2329af326951f5097fdd114c50e853957d3e569493a49d22fc082a9fd791915b",
            page=UCSD_PAGE, take=("UCSDped2",), marker="UCSDped2/Train"),),  # UCSDped1 stays in the archive
        train=SplitFigures(16, 2550, _numbered("Train", 16, 3)),
        test=SplitFigures(12, 2010, _numbered("Test", 12, 3)),
        layout_entries=("Train", "Test"),
        # 360x240 grey TIFF frames and BMP masks, moved out of the extracted archive (no copies)
        work_bytes=int(1 * GB),
        citation="Mahadevan et al., Anomaly detection in crowded scenes, CVPR 2010",
    ),
    DatasetSource(
        name="avenue",
        archives=(
            Archive(role="dataset", filename="Avenue_Dataset.zip",
                    url="http://www.cse.cuhk.edu.hk/leojia/projects/detectabnormal/Avenue_Dataset.zip",
                    sha256="fc9cb8432a11ca79c18aa180c72524011411b69d3b0ff27c8816e41c0de61531",
                    page=AVENUE_PAGE, take=("training_videos", "testing_videos"), marker="training_videos"),
            Archive(role="ground_truth", filename="ground_truth_demo.zip",
                    url="http://www.cse.cuhk.edu.hk/leojia/projects/detectabnormal/ground_truth_demo.zip",
                    sha256="60fec1728ec8f73a58aad3aeb5729d70a805a47e0b8eb4bf91ab67ef06386d77",
                    page=AVENUE_PAGE, take=("testing_label_mask",), marker="testing_label_mask"),
        ),
        train=SplitFigures(16, 15328, _numbered("", 16, 2)),
        test=SplitFigures(21, 15324, _numbered("", 21, 2)),
        layout_entries=("training", "testing", "ground_truth_demo"),
        # 30,652 PNG frames of 640x360x3, the extracted .avi files and the .mat masks
        work_bytes=int(30652 * 640 * 360 * 3 * PNG_SHARE + 4 * GB),
        citation="Lu et al., Abnormal event detection at 150 FPS in MATLAB, ICCV 2013",
    ),
    DatasetSource(
        name="ShanghaiTech",
        archives=(Archive(
            role="dataset", filename="shanghaitech.tar.gz", url=None,  # only a bare IP address serves it
            sha256="c13a827043b259ccf8493c9d9130486872992153a9d714fe229e523cd4c94116",
            page=SHANGHAITECH_PAGE, take=("training/videos", "testing"), marker="testing/test_frame_mask"),),
        train=SplitFigures(330, 274515),
        test=SplitFigures(107, 42883),
        layout_entries=("training", "Testing"),
        # 274,515 PNG frames of 856x480x3, the test JPEGs (about 3 GB), the pixel masks (one byte a
        # pixel: 17.6 GB) and the extracted training videos
        work_bytes=int(274515 * 856 * 480 * 3 * PNG_SHARE + 42883 * 856 * 480 + 15 * GB),
        citation="Luo et al., A revisit of sparse coding based anomaly detection in stacked RNN framework, ICCV 2017",
    ),
)}


def find_source(name: str) -> DatasetSource:
    """The dataset called `name`, in any letter case (`ucsdped2`, `Avenue`, `shanghaitech`)."""
    for key, source in SOURCES.items():
        if key.lower() == name.lower():
            return source
    raise KeyError(name)
