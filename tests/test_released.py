"""The reference authors' released models and box files (utils/released.py): fetched from a mirror
on 127.0.0.1 laid out as GitHub's raw file host, verified by git blob SHA-1, placed, loaded and scored.

The real files here (tests/data/released/, tests/data/UCSDped2_bboxes_*.npy) are the released
training-score files of vec_UCSDped2_5raw5of and the released box files of UCSDped2, byte for
byte; the set's model file is too large to keep, so a test makes model files of its format.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import copy_prepared, run_main
from tests.local_server import serve
from tests.local_server import local_only as guard_local
from utils import released as rel
from utils.infra.errors import VECError
from utils.infra.io import load_torch_file
from utils.released import (RELEASED, ReleasedFile, check_released_folder, fetch_released, git_blob_sha1,
                            released_set_in, released_status)

DATA = Path(__file__).resolve().parent / "data"
SCORES = {f"UCSDped2_{kind}_training_scores_obj_det_with_motion_SelfComplete.npy":
          (DATA / "released" / f"UCSDped2_{kind}_training_scores_obj_det_with_motion_SelfComplete.npy").read_bytes()
          for kind in ("raw", "of")}
BOXES = {f"bboxes_{split}_obj_det_with_motion.npy": (DATA / f"UCSDped2_bboxes_{split}_obj_det_with_motion.npy").read_bytes()
         for split in ("train", "test")}


@pytest.fixture(autouse=True)
def local_only(monkeypatch):
    monkeypatch.delenv("VEC_WEIGHTS_MIRROR", raising=False)
    return guard_local(monkeypatch)


@pytest.fixture
def mirror():
    """A copy of the released files on 127.0.0.1, at <commit>/<path in the reference repository>."""
    with serve() as httpd:
        for name in ("vec_UCSDped2_5raw5of", "boxes_UCSDped2"):
            s = RELEASED[name]
            for file in s.files:
                body = SCORES.get(file.name) or BOXES.get(file.name)
                if body is not None:  # the model file is not served: a 404, as for a dead link
                    httpd.files[f"/{s.commit}/{file.path}"] = body
        yield httpd


def weights_main(capfd, *argv):
    from utils import weights

    capfd.readouterr()
    code = weights.main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- the table

def test_the_table_names_eight_sets_and_their_21_files():
    assert list(RELEASED) == ["vec_UCSDped2_5raw5of", "vec_UCSDped2_5raw1of", "vec_avenue_5raw5of",
                              "vec_avenue_5raw1of", "vec_ShanghaiTech_5raw5of", "boxes_UCSDped2", "boxes_avenue",
                              "boxes_ShanghaiTech"]
    files = [f for s in RELEASED.values() for f in s.files]
    assert len(files) == 21 and len({f.blob_sha1 for f in files}) == 21
    shanghai = RELEASED["vec_ShanghaiTech_5raw5of"]
    assert shanghai.files[0].path == ("data/raw2flow/shanghaiTech_model_5raw5of_auc0.748/"
                                      "ShanghaiTech_model_obj_det_with_motion_SelfComplete.npy")
    assert [RELEASED[f"vec_{d}"].context_of_num for d in ("UCSDped2_5raw5of", "UCSDped2_5raw1of", "avenue_5raw1of")] \
        == [4, 0, 0]
    assert RELEASED["vec_avenue_5raw1of"].reference_folder == "avenue_model_5raw1of_auc0.902"
    assert RELEASED["boxes_UCSDped2"].url(RELEASED["boxes_UCSDped2"].files[0]) == (
        "https://raw.githubusercontent.com/yuguangnudt/VEC_VAD/53b36a1c6323a6774522f5979f48823a7e3fbd3a/"
        "raw_datasets/UCSDped2/bboxes_train_obj_det_with_motion.npy")


def test_git_blob_sha1_of_the_real_files_is_the_tables():
    """The values in the table are git's: the real released files hash to them (and `git hash-object` agrees)."""
    by_name = {f.name: f for f in RELEASED["vec_UCSDped2_5raw5of"].files + RELEASED["boxes_UCSDped2"].files}
    for name in SCORES:
        assert git_blob_sha1(DATA / "released" / name) == by_name[name].blob_sha1
    for name in BOXES:
        assert git_blob_sha1(DATA / f"UCSDped2_{name}") == by_name[name].blob_sha1


# ----------------------------------------------------------------------------- fetching

def test_fetch_places_the_released_bytes_and_reports_the_missing_model(tmp_path, mirror, capfd):
    code, out, err = weights_main(capfd, "fetch", "vec_UCSDped2_5raw5of", "boxes_UCSDped2", "--mirror", mirror.base,
                                  "--dest", tmp_path, "--no-progress", "--timeout", "5")
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert "UCSDped2_model_obj_det_with_motion_SelfComplete.npy" in line and "HTTP 404" in line
    model_set = tmp_path / "vec_UCSDped2_5raw5of"
    for name, body in SCORES.items():
        assert (model_set / name).read_bytes() == body
    for name, body in BOXES.items():
        assert (tmp_path / "boxes_UCSDped2" / name).read_bytes() == body
    assert not (model_set / rel.MARKER).exists()  # not a complete set
    assert not list(tmp_path.rglob("*.partial"))
    assert {p for p, _ in mirror.requests} >= {f"/{rel.MODELS_COMMIT}/{f.path}" for f in RELEASED["vec_UCSDped2_5raw5of"].files}
    code, out, _ = weights_main(capfd, "list", "--dest", tmp_path)
    assert "vec_UCSDped2_5raw5of" in out and "2 of 3 files present and verified" in out
    assert out.count("present, verified (git blob SHA-1 of every file)") == 1  # boxes_UCSDped2


@pytest.mark.parametrize("damage", ["one byte", "truncated", "html page"])
def test_a_file_whose_bytes_differ_is_one_line_and_nothing_is_placed(tmp_path, mirror, capfd, damage):
    s = RELEASED["boxes_UCSDped2"]
    path = f"/{s.commit}/{s.files[0].path}"
    good = mirror.files[path]
    mirror.files[path] = {"one byte": good[:1000] + bytes([good[1000] ^ 1]) + good[1001:],
                          "truncated": good[:len(good) // 3],
                          "html page": b"<!DOCTYPE html><html><body>Sign in to continue</body></html>"}[damage]
    code, _, err = weights_main(capfd, "fetch", "boxes_UCSDped2", "--mirror", mirror.base, "--dest", tmp_path,
                                "--no-progress")
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and "bboxes_train_obj_det_with_motion.npy" in line
    assert f"expected {s.files[0].blob_sha1}" in line
    assert not (tmp_path / "boxes_UCSDped2" / "bboxes_train_obj_det_with_motion.npy").exists()
    assert not list(tmp_path.rglob("*.partial"))


def test_an_interrupted_download_resumes(tmp_path, mirror, capfd):
    mirror.cut_next = True
    code, _, err = weights_main(capfd, "fetch", "boxes_UCSDped2", "--mirror", mirror.base, "--dest", tmp_path,
                                "--no-progress")
    assert code == 2 and "interrupted" in err and "Traceback" not in err
    assert list(tmp_path.rglob("*.partial"))
    code, out, err = weights_main(capfd, "fetch", "boxes_UCSDped2", "--mirror", mirror.base, "--dest", tmp_path,
                                  "--no-progress")
    assert code == 0, err
    assert "resuming" in out
    assert any(rng is not None and rng.startswith("bytes=") for _, rng in mirror.requests)
    for name, body in BOXES.items():
        assert (tmp_path / "boxes_UCSDped2" / name).read_bytes() == body


def test_box_files_go_where_the_pipeline_reads_them_and_own_box_files_are_kept(tmp_path, mirror):
    lines = []
    placed = fetch_released(RELEASED["boxes_UCSDped2"], tmp_path, mirror=mirror.base, progress=False,
                            say=lines.append)
    assert [p.relative_to(tmp_path).as_posix() for p in placed] == [
        "raw_datasets/UCSDped2/bboxes_train_obj_det_with_motion.npy",
        "raw_datasets/UCSDped2/bboxes_test_obj_det_with_motion.npy"]
    # The box stage names them as the released files.
    from utils.foreground.split import _made_elsewhere
    assert "released, boxes_UCSDped2" in _made_elsewhere(placed[0]) and "no detector is run" in _made_elsewhere(placed[0])

    own = tmp_path / "own"
    (own / "raw_datasets" / "UCSDped2").mkdir(parents=True)
    mine = own / "raw_datasets" / "UCSDped2" / "bboxes_train_obj_det_with_motion.npy"
    mine.write_bytes(b"my own boxes")
    lines.clear()
    fetch_released(RELEASED["boxes_UCSDped2"], own, mirror=mirror.base, progress=False, say=lines.append)
    assert mine.read_bytes() == b"my own boxes"
    assert not (mine.parent / "bboxes_test_obj_det_with_motion.npy").exists()
    (line,) = lines
    assert str(mine.parent) in line and "kept" in line and "fetch boxes_UCSDped2" in line
    assert "your own box file, kept" in released_status(RELEASED["boxes_UCSDped2"], own)


# ----------------------------------------------------------------------------- formats

def test_the_released_training_score_files_load_safely():
    for name in SCORES:
        scores = load_torch_file(DATA / "released" / name)
        (row,), = [scores]
        (cell,) = row
        assert isinstance(cell, np.ndarray) and cell.shape == (31089,) and np.isfinite(cell).all()


def _legacy_model_files(folder: Path, dataset: str, cloze, data_parallel: bool) -> None:
    """Model and training-score files as the reference's train.py wrote them under PyTorch 1.1:
    legacy (non-zip) serialisation, nested [h][w] lists, numpy training scores."""
    from utils.trained_model import make_network

    torch.manual_seed(0)
    network = make_network(cloze, stacked=False)
    state = (torch.nn.DataParallel(network) if data_parallel else network).state_dict()
    stem = folder / f"{dataset}_{{}}_obj_det_with_motion_SelfComplete.npy"
    torch.save([[[state]]], str(stem).format("model"), _use_new_zipfile_serialization=False)
    rng = np.random.default_rng(0)
    for kind in ("raw", "of"):
        torch.save([[rng.gamma(2.0, 50.0, 64)]], str(stem).format(f"{kind}_training_scores"),
                   _use_new_zipfile_serialization=False)


@pytest.mark.parametrize("data_parallel", [True, False])
def test_a_model_file_in_the_legacy_format_loads(tmp_path, small_synthetic, data_parallel):
    from utils.trained_model import load_trained

    _legacy_model_files(tmp_path, "UCSDped2", small_synthetic.cloze, data_parallel)
    with open(tmp_path / "UCSDped2_model_obj_det_with_motion_SelfComplete.npy", "rb") as f:
        assert f.read(2) == b"\x80\x02"  # a pickle, not a zip: the legacy format
    trained = load_trained(tmp_path, "UCSDped2", "obj_det_with_motion", "SelfComplete", scene_level=False)
    state = trained.states[0][0]
    assert state and not any(k.startswith("module.") for k in state)
    assert trained.raw_scores[0][0].shape == (64,)


# ----------------------------------------------------------------------------- a set's folder

def test_a_set_placed_by_hand_but_incomplete_is_one_line(tmp_path, capfd):
    """The reference README has users copy the set's folder by hand: that folder name is recognised."""
    folder = tmp_path / "UCSDped2_model_5raw5of_auc0.973"
    folder.mkdir()
    for name in SCORES:
        shutil.copy(DATA / "released" / name, folder / name)
    assert released_set_in(folder) is RELEASED["vec_UCSDped2_5raw5of"]
    config = tmp_path / "config.cfg"
    shutil.copy(Path(__file__).resolve().parent.parent / "config.cfg", config)
    done = run_main(capfd, "test.py", "--config", config, "--model", folder)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line == (f"error: {folder} is not a complete released set vec_UCSDped2_5raw5of: "
                    "UCSDped2_model_obj_det_with_motion_SelfComplete.npy is missing; "
                    "run `python -m utils.weights fetch vec_UCSDped2_5raw5of`")
    (folder / "UCSDped2_model_obj_det_with_motion_SelfComplete.npy").write_bytes(b"not the model")
    with pytest.raises(VECError, match="its git blob SHA-1 is .*, expected 4946cee8"):
        check_released_folder(folder, RELEASED["vec_UCSDped2_5raw5of"])
    assert not (tmp_path / "results").exists()


def _register(monkeypatch, folder: Path, dataset: str, variant: str) -> rel.ReleasedSet:
    """`folder`'s three files as a released set of the synthetic dataset (the real sets need the real datasets)."""
    template = RELEASED[f"vec_UCSDped2_{variant}"]
    files = tuple(ReleasedFile(f"data/raw2flow/{folder.name}/{p.name}", git_blob_sha1(p))
                  for p in (folder / f"{dataset}_{kind}_obj_det_with_motion_SelfComplete.npy"
                            for kind in ("model", "raw_training_scores", "of_training_scores")))
    released = replace(template, name=folder.name, dataset=dataset, files=files, released_auroc=0.5)
    monkeypatch.setitem(RELEASED, released.name, released)
    monkeypatch.setitem(rel.PAPER_AUROC, dataset, 0.6)
    return released


@pytest.mark.slow
def test_released_sets_score_with_their_own_context_of_num(tmp_path, prepared_run, monkeypatch, capfd):
    """A 5raw1of set scores with context_of_num 0 and a 5raw5of set with 4, whatever the config says;
    metrics.json and report.html say which released model scored."""
    root = copy_prepared(prepared_run, tmp_path / "run")
    config = root / "config.cfg"
    work = root / "data" / "raw2flow"
    # The prepared model is a 5of one (context_of_num 4); train a 1of one beside it.
    five = root / "released" / "vec_synthetic_5raw5of"
    shutil.copytree(work, five, ignore=shutil.ignore_patterns("*cubes*", "*.json"))
    assert run_main(capfd, "train.py", "--config", config, "--set", "synthetic.context_of_num=0").returncode == 0
    one = root / "released" / "vec_synthetic_5raw1of"
    shutil.copytree(work, one, ignore=shutil.ignore_patterns("*cubes*", "*.json"))
    for folder, variant, configured, used in ((one, "5raw1of", 4, 0), (five, "5raw5of", 0, 4)):
        _register(monkeypatch, folder, "synthetic", variant)
        done = run_main(capfd, "test.py", "--config", config, "--model", folder,
                        "--set", f"SelfComplete.context_of_num={configured}")
        assert done.returncode == 0, done.stderr
        last = done.stdout.strip().splitlines()[-1]
        assert last.startswith("frame-level AUROC (micro) on synthetic: ")
        assert last.endswith(f"(released model {folder.name}: 0.500 as released, 0.600 in the paper)")
        results = root / "results" / folder.name
        metrics = json.loads((results / "metrics.json").read_text())
        assert metrics["cloze"]["context_of_num"] == used
        assert metrics["released_model"]["name"] == folder.name and metrics["released_model"]["context_of_num"] == used
        assert f"released model {folder.name}" in (results / "report.html").read_text()
    assert not (root / "results" / "synthetic").exists()  # the user's own results are not touched


# ----------------------------------------------------------------------------- the reference's own scoring

@pytest.mark.parametrize("golden, of_num", [("selfcomplete_full_of5_nf8.npz", 4), ("selfcomplete_net4_of1_nf8.npz", 0)])
def test_a_model_trained_by_the_reference_scores_as_the_reference_test_py(tmp_path, small_synthetic, golden, of_num):
    """Reference-format files (legacy serialisation, DataParallel keys, numpy statistics) holding the
    golden vectors' network: loaded and run by this project, the cube scores are the reference
    test.py's formula applied to the reference network's own outputs (the golden vectors)."""
    from utils.cloze_steps import ErrorStep
    from utils.scoring import block_statistics, frame_scores, normalised_scores
    from support.stand_in_weights import det_fill
    from utils.trained_model import load_trained, make_network

    data = np.load(DATA / golden)
    cloze = replace(small_synthetic.cloze, nf=8, context_of_num=of_num, w_raw=0.5, w_of=1.0)
    network = make_network(cloze, stacked=False)
    state = det_fill(torch.nn.DataParallel(network).state_dict())
    torch.save([[[state]]], tmp_path / "UCSDped2_model_obj_det_with_motion_SelfComplete.npy",
               _use_new_zipfile_serialization=False)
    rng = np.random.default_rng(1)
    stats = {kind: rng.gamma(3.0, 20.0, 50) for kind in ("raw", "of")}
    for kind, values in stats.items():
        torch.save([[values]], tmp_path / f"UCSDped2_{kind}_training_scores_obj_det_with_motion_SelfComplete.npy",
                   _use_new_zipfile_serialization=False)

    trained = load_trained(tmp_path, "UCSDped2", "obj_det_with_motion", "SelfComplete", scene_level=False)
    model = make_network(cloze)
    model.load_state_dict(trained.states[0][0])
    model.eval()
    step = ErrorStep(model, use_flow=True, batch_size=len(data["x"]), device=torch.device("cpu"), capture=False)
    raw_sse, of_sse = (t.double().numpy() for t in step(torch.from_numpy(data["x"]), torch.from_numpy(data["x_of"])))
    ours = normalised_scores(raw_sse, of_sse, block_statistics(trained, 0, 0), cloze)

    def sse(outputs, targets):
        return ((data[outputs].astype(np.float64) - data[targets]) ** 2).reshape(len(data["x"]), -1).sum(1)

    def z(values, training):  # the reference normalises with numpy's mean and (population) std
        return (values - training.mean()) / training.std()

    reference = 0.5 * z(sse("raw_outputs", "raw_targets"), stats["raw"]) + 1.0 * z(sse("of_outputs", "of_targets"),
                                                                                  stats["of"])
    # Sums of 15,360 squared float32 errors: measured within 2e-5 relative across CPU kernels.
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 8, 8]], float)
    frames = frame_scores(2, (32, 32), np.array([0, 0, 1]), boxes, ours)
    np.testing.assert_allclose(frames, [max(reference[0], reference[1]), reference[2]], rtol=1e-4, atol=1e-4)
