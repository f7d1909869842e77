"""config.cfg: the repository's file loads with the reference's values; bad files fail in one line."""
import pytest

from tests.conftest import REPO, write_config
from utils.config import load_config
from utils.errors import VECError


def test_repository_config_keeps_reference_values(tmp_path):
    cfg = load_config(REPO / "config.cfg")
    assert cfg.dataset_name == "synthetic" and cfg.foreground_extraction_mode == "obj_det_with_motion"
    assert cfg.cloze.epochs == 8 and cfg.cloze.nf == 8  # synthetic overrides
    for name, (score, min_area, cover, area, binary, blur) in {
            "UCSDped2": (0.5, 100, 0.6, 100, 18, 3), "avenue": (0.25, 1600, 0.6, 1600, 18, 5),
            "ShanghaiTech": (0.5, 64, 0.65, 64, 15, 5)}.items():
        text = (REPO / "config.cfg").read_text().replace("dataset_name = synthetic", f"dataset_name = {name}")
        (tmp_path / "config.cfg").write_text(text)
        cfg = load_config(tmp_path / "config.cfg")
        b = cfg.dataset.boxes
        assert (b.score_thr, b.min_area, b.cover_thr, b.area_thr, b.binary_thr, b.blur_size) == \
            (score, min_area, cover, area, binary, blur)
        assert cfg.dataset.flow_method == "flownet2" and cfg.dataset.detector == "cascade_rcnn"
        c = cfg.cloze
        assert (c.epochs, c.batch_size, c.nf, c.w_raw, c.w_of, c.raw_range, c.padding) == (20, 128, 32, 0.5, 1, 10, False)
        assert c.tot_raw_num == 5 and c.tot_of_num == 5 and c.network_raw_range is None


def test_paths_resolve_against_the_config_folder(tmp_path):
    cfg = load_config(write_config(tmp_path))
    assert cfg.dataset_dir == tmp_path / "raw_datasets" / "synthetic"
    assert cfg.work_dir == tmp_path / "data" / "raw2flow"


@pytest.mark.parametrize("change, message", [
    (("dataset_name = synthetic", "dataset_name = UCSD"), "no \\[UCSD\\] section"),
    (("flow_method = dis", "flow_method = pwc"), "flow_method = 'pwc' is not one of"),
    (("nf = 8", "nf = eight"), "is not an integer"),
    (("context_of_num = 4", "context_of_num = 2"), "context_of_num = 0 or 4"),
])
def test_bad_values_are_one_line_errors(tmp_path, change, message):
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace(*change))
    with pytest.raises(VECError, match=message) as err:
        load_config(path)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(VECError, match="not found"):
        load_config(tmp_path / "none.cfg")
