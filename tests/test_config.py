"""config.cfg: the repository's file loads with the reference's values; bad files fail in one line."""
import configparser
import dataclasses
import importlib.util
import json

import pytest

from tests.conftest import REPO, write_config
from utils.config import load_config
from utils.datasets import generate_synthetic
from utils.infra.errors import VECError


MANIFEST = "synthetic_model_obj_det_with_motion_SelfComplete.json"


def script(name: str):
    """An entry script as a module (`test.py` would otherwise be Python's own `test` package)."""
    spec = importlib.util.spec_from_file_location(f"vec_script_{name}", REPO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


@pytest.mark.parametrize("change, message", [
    (("nf = 8\n", "nf = 8\nepoch = 3\n"), r"unknown key 'epoch' in \[synthetic\]; did you mean 'epochs'\?"),
    (("[SelfComplete]", "[SelfComplet]"), r"unknown section \[SelfComplet\]; did you mean 'SelfComplete'\?"),
    (("seed = 0", "sed = 0"), r"unknown key 'sed' in \[shared_parameters\]; did you mean 'seed'\?"),
    (("motionThr = 0\nflow_method = dis", "motionTr = 0\nflow_method = dis"), r"did you mean 'motion(Thr|_thr)'\?"),
    (("nf = 8\n", "nf = 8\nEPOCS = 3\n"), r"unknown key 'EPOCS' in \[synthetic\]; did you mean 'epochs'\?"),
])
def test_misspelled_keys_and_sections_name_the_closest_known_one(tmp_path, change, message):
    path = write_config(tmp_path)
    text = path.read_text()
    assert change[0] in text
    path.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(VECError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("key, value, message", [
    ("patch_size", "-3", "must be ≥ 8"), ("batch_size", "0", "must be ≥ 1"), ("nf", "0", "must be ≥ 1"),
    ("epochs", "abc", r"\[synthetic\] epochs = 'abc' is not an integer"),
])
def test_ranges_and_types_name_the_section_the_value_came_from(tmp_path, key, value, message):
    path = write_config(tmp_path)
    before, synthetic = path.read_text().split("[synthetic]\n")
    section, after = synthetic.split("[SelfComplete]")
    section = "".join(line for line in section.splitlines(True) if not line.startswith(f"{key} ="))
    path.write_text(f"{before}[synthetic]\n{key} = {value}\n{section}[SelfComplete]{after}")
    with pytest.raises(VECError, match=message) as err:
        load_config(path)
    assert f"{path}: [synthetic] {key}" in str(err.value)
    with pytest.raises(VECError, match=f"--set synthetic.{key} = '{value}'"):
        load_config(write_config(tmp_path), [f"synthetic.{key}={value}"])


def test_devices_and_seeds_are_checked(tmp_path):
    path = write_config(tmp_path)
    with pytest.raises(VECError, match="device = gpu is not a device"):
        load_config(path, ["shared_parameters.device=gpu"])
    with pytest.raises(VECError, match=r"seed = '-1' is out of range"):
        load_config(path, ["shared_parameters.seed=-1"])


def test_every_selfcomplete_key_overrides_per_dataset_and_set_overrides_the_file(tmp_path):
    path = write_config(tmp_path)
    cfg = load_config(path, ["synthetic.w_raw=2", "SelfComplete.learning_rate=0.01", "synthetic.rawRange=2"])
    assert cfg.cloze.w_raw == 2 and cfg.cloze.learning_rate == 0.01 and cfg.cloze.raw_range == 2
    assert cfg.cloze.nf == 8  # [synthetic] still overrides [SelfComplete]
    with pytest.raises(VECError, match=r"--set synthetic.border_mode = 'hard' is not one of predict"):
        load_config(path, ["synthetic.border_mode=hard"])  # a choice key, overridable per dataset
    with pytest.raises(VECError, match="is not SECTION.KEY=VALUE"):
        load_config(path, ["epochs=3"])


def test_defaults_live_on_the_schema(tmp_path):
    """A dataset section with only its layout gets the paper's settings from the dataclass defaults."""
    path = tmp_path / "minimal.cfg"
    path.write_text("[shared_parameters]\ndataset_name = mine\n[mine]\nlayout = avenue\n")
    cfg = load_config(path)
    assert cfg.dataset.layout == "avenue" and cfg.dataset.patch_size == 32 and cfg.dataset.flow_method == "flownet2"
    assert (cfg.cloze.epochs, cfg.cloze.batch_size, cfg.cloze.nf, cfg.cloze.w_raw) == (20, 128, 32, 0.5)
    assert cfg.raw_dataset_dir == tmp_path / "raw_datasets" and cfg.dataset.flownet2_checkpoint.is_absolute()


def _written_by_configparser(path):
    """`path` read and written back by Python's configparser, as a tool editing it would: keys lowercased."""
    parser = configparser.ConfigParser(inline_comment_prefixes=("#", ";"))
    parser.read(path)
    written = path.with_name("written.cfg")
    with written.open("w") as f:
        parser.write(f)
    return written


def test_keys_match_in_any_case(tmp_path):
    path = write_config(tmp_path)
    written = _written_by_configparser(path)
    text = written.read_text()
    assert "motionthr = 0" in text and "userange" not in text and "rawrange = 10" in text and "motionThr" not in text
    for dataset in ("synthetic", "UCSDped2", "avenue", "ShanghaiTech"):
        chosen = [f"shared_parameters.dataset_name={dataset}"]
        original = load_config(path, chosen)
        assert dataclasses.replace(load_config(written, chosen), config_path=path) == original
    # --set replaces the file's key whatever the case of either; two spellings of one key in a file are refused.
    cfg = load_config(written, ["synthetic.MotionThr=0.5", "SelfComplete.RAWRANGE=2", "synthetic.NF=3"])
    assert (cfg.dataset.motion_thr, cfg.cloze.raw_range, cfg.cloze.nf) == (0.5, 2, 3)
    with pytest.raises(VECError, match=r"--set synthetic.EPOCHS = 'x' is not an integer"):
        load_config(written, ["synthetic.EPOCHS=x"])
    path.write_text(path.read_text().replace("nf = 8\n", "nf = 8\nNF = 4\n"))
    with pytest.raises(VECError, match=r"\[synthetic\] sets nf twice \(nf and NF\); keep one"):
        load_config(path)


def test_a_config_written_by_configparser_trains(tmp_path, capsys):
    generate_synthetic(tmp_path / "raw_datasets" / "synthetic", seed=4, n_train=1, n_test=1, n_frames=12,
                       progress=False)
    written = _written_by_configparser(write_config(tmp_path, nf=2))
    assert script("calc_img_inputs").main(["--config", str(written), "--split", "train"]) == 0
    assert script("train").main(["--config", str(written), "--set", "synthetic.EPOCHS=1"]) == 0, \
        capsys.readouterr().err[-2000:]
    manifest = json.loads((tmp_path / "data" / "raw2flow" / MANIFEST).read_text())
    assert manifest["settings"]["nf"] == 2 and manifest["settings"]["motion_thr"] == 0
    assert capsys.readouterr().out.count("trained on ") == 1


@pytest.mark.parametrize("assignment, error", [
    # [SelfComplete] values that [synthetic] overrides are checked all the same
    ("SelfComplete.nf=abc", "--set SelfComplete.nf = 'abc' is not an integer"),
    ("SelfComplete.nf=", "--set SelfComplete.nf = '' is not an integer"),
    ("SelfComplete.epochs=abc", "--set SelfComplete.epochs = 'abc' is not an integer"),
    ("SelfComplete.epochs=-2", "--set SelfComplete.epochs = '-2' is out of range: it must be ≥ 1"),
    ("SelfComplete.nf=50%", "--set SelfComplete.nf = '50%' is not an integer"),
    ("SelfComplete.rawRange=-1", "--set SelfComplete.rawRange = '-1' is out of range: it must be ≥ 0"),
    ("SelfComplete.learning_rate=nan", "--set SelfComplete.learning_rate = 'nan' is not a finite number"),
    ("SelfComplete.learning_rate=0", "--set SelfComplete.learning_rate = '0' is out of range: it must be > 0"),
    ("SelfComplete.w_of=inf", "--set SelfComplete.w_of = 'inf' is not a finite number"),
    ("SelfComplete.w_raw=-0.5", "--set SelfComplete.w_raw = '-0.5' is out of range: it must be ≥ 0"),
    ("SelfComplete.precision=fp16", "--set SelfComplete.precision = 'fp16' is not one of fp32, bf16"),
    ("synthetic.smoothing_sigma=-1", "--set synthetic.smoothing_sigma = '-1' is out of range: it must be ≥ 0"),
    ("synthetic.score_thr=1.5", "--set synthetic.score_thr = '1.5' is out of range: it must be between 0 and 1"),
    ("synthetic.min_area=-inf", "--set synthetic.min_area = '-inf' is not a finite number"),
    ("synthetic.motionThr=-1", "--set synthetic.motionThr = '-1' is out of range: it must be ≥ 0"),
    ("synthetic.blur_size=4", "--set synthetic.blur_size = '4' is not an odd number (a Gaussian blur's kernel size)"),
    ("shared_parameters.seed=4294967296",
     "--set shared_parameters.seed = '4294967296' is out of range: it must be between 0 and 4294967295"),
    ("train_parameters.mode=test", "--set train_parameters.mode = 'test' is not one of train"),
    # a dataset section that is not the chosen one
    ("UCSDped2.binary_thr=300", "--set UCSDped2.binary_thr = '300' is out of range: it must be between 0 and 255"),
    ("avenue.patch_size=20",
     "--set avenue.patch_size = '20' is not a multiple of 8 (the cloze networks halve the patch three times)"),
])
def test_a_bad_value_anywhere_stops_the_script_in_one_line(tmp_path, capsys, assignment, error):
    config = write_config(tmp_path)
    assert script("train").main(["--config", str(config), "--set", assignment]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"error: {error}" and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.cfg"]  # nothing generated, nothing written


def test_an_overridden_value_in_the_file_is_checked_where_it_is_written(tmp_path):
    path = write_config(tmp_path)
    text = path.read_text()
    path.write_text(text.replace("nf = 32\n", "nf = thirty-two\n"))  # [SelfComplete]; [synthetic] sets nf = 8
    with pytest.raises(VECError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: [SelfComplete] nf = 'thirty-two' is not an integer"


@pytest.mark.parametrize("fps", ["inf", "nan", "0", "-25", "abc"])
def test_fps_is_a_finite_positive_number(tmp_path, capsys, fps):
    status = script("test").main(["--config", str(write_config(tmp_path)), "--video", "clip.mp4", "--fps", fps])
    assert status == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "usage:" not in err
    last = err.strip().splitlines()[-1]
    assert (last.startswith("error: argument --fps: invalid float value: 'abc'") if fps == "abc" else
            last.startswith(f"error: --fps {float(fps)} is not a frame rate"))
