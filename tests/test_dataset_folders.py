"""A benchmark folder the layout does not take as a video is named, never dropped; a region
ground-truth error names the file that is wrong. Real folders from the synthetic generator,
the scripts run in-process."""
import shutil

import pytest

import calc_img_inputs
import test as test_script
from tests.conftest import write_config
from utils.datasets import generate_synthetic, open_split
from utils.datasets.regions import FILE_SUFFIX, REGION_FOLDER, region_files
from utils.infra.errors import VECError

ODD = "T<img src=x onerror=alert(1)>"


@pytest.fixture
def synthetic(tmp_path):
    root = tmp_path / "raw_datasets" / "synthetic"
    generate_synthetic(root, seed=3, n_train=1, n_test=3, n_frames=6, progress=False)
    return tmp_path, root


def _rename_video(root, old, new):
    """A test video renamed everywhere: frames, `_gt` masks, region ground truth."""
    (root / "Test" / old).rename(root / "Test" / new)
    (root / "Test" / f"{old}_gt").rename(root / "Test" / f"{new}_gt")
    (root / REGION_FOLDER / f"{old}{FILE_SUFFIX}").rename(root / REGION_FOLDER / f"{new}{FILE_SUFFIX}")


def _one_error(status, err, *needles):
    assert status == 2 and "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and sum(line.startswith("error: ") for line in err.splitlines()) == 1, err
    for needle in needles:
        assert needle in last, (needle, last)


def test_a_renamed_test_video_is_named_not_dropped(synthetic, capsys):
    folder, root = synthetic
    _rename_video(root, "Test002", ODD)
    config = write_config(folder)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    for script, args in ((calc_img_inputs, ["--split", "test"]), (test_script, [])):
        capsys.readouterr()
        status = script.main(["--config", str(config), *args])
        _one_error(status, capsys.readouterr().err, f"folder {root / 'Test' / ODD} is not a video of the UCSDped2 "
                                                    "layout", "rename it")
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before  # no flow, no data, no results


def test_masks_of_no_video_and_a_stray_training_folder_are_named(synthetic):
    _, root = synthetic
    shutil.copytree(root / "Test" / "Test001_gt", root / "Test" / "Test009_gt")
    with pytest.raises(VECError, match=r"folder .*Test009_gt is the masks of no video"):
        open_split(root, "UCSDped2", "test")
    (root / "Train" / "walkers").mkdir()
    with pytest.raises(VECError, match=r"folder .*walkers is not a video of the UCSDped2 layout .*'Train'"):
        open_split(root, "UCSDped2", "train")


def test_hidden_folders_are_not_videos(synthetic):
    _, root = synthetic
    (root / "Test" / ".ipynb_checkpoints").mkdir()
    assert open_split(root, "UCSDped2", "test").video_names == ["Test001", "Test002", "Test003"]


def test_region_file_named_after_no_video_is_the_one_named(synthetic):
    _, root = synthetic
    regions = root / REGION_FOLDER
    (regions / f"Test002{FILE_SUFFIX}").rename(regions / f"{ODD}{FILE_SUFFIX}")
    # Its last number (1, from "alert(1)") is Test001's, which has its own file: the odd file is named.
    with pytest.raises(VECError) as caught:
        region_files(regions, ["Test001", "Test002", "Test003"])
    message = str(caught.value)
    assert message.startswith(f"{regions / (ODD + FILE_SUFFIX)} is named after no test video")
    assert "number 1 is that of video Test001, which has Test001_gt.txt" in message


def test_region_files_match_by_name_first(synthetic):
    _, root = synthetic
    _rename_video(root, "Test002", ODD)  # as a video of a layout that takes any name (Avenue's)
    files = region_files(root / REGION_FOLDER, ["Test001", ODD, "Test003"])
    assert {video: path.name for video, path in files.items()} == {
        1: "Test001_gt.txt", 2: f"{ODD}{FILE_SUFFIX}", 3: "Test003_gt.txt"}


@pytest.mark.parametrize("name, needle", [
    ("notes", "is named after no test video (videos Test001, Test002, Test003) and holds no video number"),
    ("Test7", "matches no test video by name or number 7"),
])
def test_region_files_that_fit_no_video_are_named(synthetic, name, needle):
    _, root = synthetic
    (root / REGION_FOLDER / f"{name}{FILE_SUFFIX}").write_text("")
    with pytest.raises(VECError) as caught:
        region_files(root / REGION_FOLDER, ["Test001", "Test002", "Test003"])
    message = str(caught.value)
    assert message.startswith(str(root / REGION_FOLDER / f"{name}{FILE_SUFFIX}")) and needle in message
