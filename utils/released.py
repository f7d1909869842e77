"""The files the reference's authors released: their trained models and their box files.

    RELEASED["vec_UCSDped2_5raw5of"]   model + both training-score files of one trained model
    RELEASED["boxes_UCSDped2"]         the Cascade R-CNN + motion box files of both splits

Each file is taken from the reference repository (github.com/yuguangnudt/VEC_VAD) at the
commit that holds it: the trained models were removed from its tree in February 2022 and live
on at commit ee60363 (their folders `data/raw2flow/<dataset>_model_<variant>_auc<AUROC>/`),
the box files are in its newest commit (`raw_datasets/<dataset>/`). No checksum is published
beside them, but git records one for every file: the blob SHA-1 (SHA-1 of `blob <size>\\0`
followed by the bytes), which is what each file is checked against before it gets its name.

A model set goes into a folder of its own, `data/released/<set name>/`, never over a model
the user trained; `python test.py --model data/released/<set name>` scores it on its dataset's
test split with its `context_of_num` (`released_set_in`, `check_released_folder`). Box files
go where the pipeline reads the reference's box files, `raw_datasets/<dataset>/`, unless box
files are already there. `python -m utils.weights fetch|list` downloads and lists them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from utils.infra.errors import VECError

REFERENCE_REPOSITORY = "yuguangnudt/VEC_VAD"
RAW_FILE_HOST = "https://raw.githubusercontent.com"  # GitHub's raw file host: <host>/<repo>/<commit>/<path>
MODELS_COMMIT = "ee603632c8f3752687d22eac68e9c351beb5a2b0"  # the last commit whose tree holds the models
BOXES_COMMIT = "53b36a1c6323a6774522f5979f48823a7e3fbd3a"  # the newest commit
RELEASED_FOLDER = Path("data/released")  # relative to the repository root
MARKER = "released.json"  # written into a model set's folder once all its files are verified

# The paper's frame-level AUROC (micro), per dataset (Table 1, VEC).
PAPER_AUROC = {"UCSDped2": 0.973, "avenue": 0.902, "ShanghaiTech": 0.748}


@dataclass(frozen=True)
class ReleasedFile:
    path: str  # in the reference repository
    blob_sha1: str  # git's SHA-1 of the file's bytes (`git ls-tree -r <commit>`)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ReleasedSet:
    """One downloadable set: a trained model (`kind` "model") or a dataset's box files ("boxes")."""

    name: str
    kind: str
    dataset: str
    commit: str
    files: tuple[ReleasedFile, ...]
    variant: str = ""  # "5raw5of" or "5raw1of" for a model
    released_auroc: float | None = None  # the AUROC in the folder's name

    @property
    def context_of_num(self) -> int:
        """Flow frames around the erased one: 4 for 5of (SelfCompleteNetFull), 0 for 1of (SelfCompleteNet4)."""
        return {"5raw5of": 4, "5raw1of": 0}[self.variant]

    @property
    def paper_auroc(self) -> float:
        return PAPER_AUROC[self.dataset]

    @property
    def reference_folder(self) -> str:
        """The folder the reference repository keeps a model set in (empty for box files)."""
        return self.files[0].path.rsplit("/", 1)[0].rsplit("/", 1)[-1] if self.kind == "model" else ""

    def url(self, file: ReleasedFile, mirror: str | None = None) -> str:
        """Where `file` is downloaded from: GitHub's raw file host, or `mirror` laid out the same way."""
        base = mirror.rstrip("/") if mirror else f"{RAW_FILE_HOST}/{REFERENCE_REPOSITORY}"
        return f"{base}/{self.commit}/{file.path}"

    def default_dir(self, root: Path) -> Path:
        """Where the set's files go under the repository (or config) folder `root`."""
        if self.kind == "model":
            return Path(root) / RELEASED_FOLDER / self.name
        return Path(root) / "raw_datasets" / self.dataset

    def destination(self, file: ReleasedFile, folder: Path) -> Path:
        """A model file keeps its reference name; a box file keeps its name in raw_datasets/<dataset>/."""
        return Path(folder) / file.name

    def fetch_command(self) -> str:
        return f"python -m utils.weights fetch {self.name}"


# The reference's released files: per model set its dataset, variant and released AUROC (as in its folder's
# name), then the git blob SHA-1 of its model, raw and flow training-score files; per box set the SHA-1 of the
# train and test box files. The values are `git ls-tree -r` of MODELS_COMMIT and BOXES_COMMIT.
_MODEL_BLOBS = (
    ("UCSDped2", "5raw5of", "0.973", "4946cee85108d3eca400b49b42cf89e0f1dd823b aa44d21b0db784205ab5be1133bfb0c0fb5a9a7a 14bb5a69b8aedd2f4721bef5ac2ecddbffd9524c"),
    ("UCSDped2", "5raw1of", "0.969", "aee7d28af74ece87d1795f72dd4c4eb3db69c88f 889332150402ec66021ce70164f27fc98f2d0a63 e756327e41d3e123a834b6a3036967ebe43e3c56"),
    ("avenue", "5raw5of", "0.896", "613cab2fec8dd9fd3bec73e187974e236f72ecc7 15bb5be5702937d02c47a187ca4074ae909af319 0477b01baedd6eefda8cd5952239be9d325b408d"),
    ("avenue", "5raw1of", "0.902", "e51016d3ce98c863d68ad172417f3af515f49a32 3acd6a6239d357e5dc8a724d8a6e29bb7b500383 6b1cc5dfc6ca14ffc5c0db8de8a6afced95db96e"),
    ("ShanghaiTech", "5raw5of", "0.748", "8c9f2465c2c10952f449326a98b7d1c13b086f25 38702b918838fa18480f343aaa9ddcdd20cce97d 2aa745e233114239e3225c781573739f831de9b4"),
)
_BOX_BLOBS = (
    ("UCSDped2", "ae5591514202254040340a936755a52db7218154 0add0bd4d5afb57aea229c160b51fe904ed99047"),
    ("avenue", "ee345b4854c12f626b6dfd2e5e525bd8a24391b0 7a97358443784e56e236e6dced03bd1062fdcc23"),
    ("ShanghaiTech", "b73771be45ae0909cc10b38eb73c3ea4bf3137cf 2ce7c1da91a1e528aeb71f5d86d05b290d8cf52a"),
)
_FOLDER_SPELLING = {"ShanghaiTech": "shanghaiTech"}  # the reference spells this model folder in lower case


def _model_set(dataset: str, variant: str, auroc: str, blobs: str) -> ReleasedSet:
    folder = f"data/raw2flow/{_FOLDER_SPELLING.get(dataset, dataset)}_model_{variant}_auc{auroc}"
    kinds = ("model", "raw_training_scores", "of_training_scores")
    files = tuple(ReleasedFile(f"{folder}/{dataset}_{kind}_obj_det_with_motion_SelfComplete.npy", blob)
                  for kind, blob in zip(kinds, blobs.split()))
    return ReleasedSet(f"vec_{dataset}_{variant}", "model", dataset, MODELS_COMMIT, files, variant, float(auroc))


def _box_set(dataset: str, blobs: str) -> ReleasedSet:
    files = tuple(ReleasedFile(f"raw_datasets/{dataset}/bboxes_{split}_obj_det_with_motion.npy", blob)
                  for split, blob in zip(("train", "test"), blobs.split()))
    return ReleasedSet(f"boxes_{dataset}", "boxes", dataset, BOXES_COMMIT, files)


RELEASED: dict[str, ReleasedSet] = {s.name: s for s in (*(_model_set(*row) for row in _MODEL_BLOBS),
                                                         *(_box_set(*row) for row in _BOX_BLOBS))}


def git_blob_sha1(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """git's object name of a file's bytes: SHA-1 of `blob <size>\\0` followed by the bytes."""
    path = Path(path)
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def verify_file(file: ReleasedFile, path: Path) -> str:
    """Check `path` against the released file's blob SHA-1; return what was verified, or raise one line."""
    actual = git_blob_sha1(path)
    if actual != file.blob_sha1:
        raise VECError(f"{file.name} is not the released file: its git blob SHA-1 is {actual}, "
                       f"expected {file.blob_sha1}")
    return f"git blob SHA-1 {file.blob_sha1[:12]}… verified"


def verify_or_none(file: ReleasedFile, path: Path) -> str | None:
    """None when `path` holds the released bytes of `file`, else why not (`verify_file`'s line)."""
    try:
        verify_file(file, path)
    except VECError as err:
        return str(err)
    return None


def released_file_of(path: Path, kind: str | None = None) -> tuple[ReleasedSet, ReleasedFile] | None:
    """The released set and file whose bytes `path` holds (by blob SHA-1), or None."""
    wanted = {f.blob_sha1: (s, f) for s in RELEASED.values() if kind in (None, s.kind) for f in s.files}
    if not Path(path).is_file():
        return None
    return wanted.get(git_blob_sha1(path))


# ----------------------------------------------------------------------------- a model set's folder

def released_set_in(folder: Path) -> ReleasedSet | None:
    """The released model set that `folder` is meant to hold: named by its marker file, by its name
    (`vec_UCSDped2_5raw5of`), or by the reference's folder name (`UCSDped2_model_5raw5of_auc0.973`,
    as the reference README has users copy it). None for any other folder (a model trained here)."""
    folder = Path(folder)
    marker = folder / MARKER
    if marker.is_file():
        try:
            name = json.loads(marker.read_text()).get("name")
        except (ValueError, AttributeError, OSError):
            name = None
        if name not in RELEASED or RELEASED[name].kind != "model":
            raise VECError(f"{marker} is damaged; delete {folder} and run `python -m utils.weights fetch` "
                           "with the set's name again")
        return RELEASED[name]
    for s in RELEASED.values():
        if s.kind == "model" and folder.name in (s.name, s.reference_folder):
            return s
    return None


def check_released_folder(folder: Path, released: ReleasedSet) -> None:
    """Every file of `released` is in `folder` with its released bytes, or one line saying what is not."""
    folder = Path(folder)
    how = f"run `{released.fetch_command()}`"
    for file in released.files:
        path = released.destination(file, folder)
        if not path.is_file():
            raise VECError(f"{folder} is not a complete released set {released.name}: {file.name} is missing; {how}")
        try:
            verify_file(file, path)
        except VECError as err:
            raise VECError(f"{folder} is not the released set {released.name}: {err}; delete {path} and {how}") from None


def write_marker(folder: Path, released: ReleasedSet) -> None:
    from utils.infra.io import write_json  # torch only when a set is placed

    write_json(Path(folder) / MARKER, {
        "name": released.name, "dataset": released.dataset, "variant": released.variant,
        "context_of_num": released.context_of_num, "released_auroc": released.released_auroc,
        "paper_auroc": released.paper_auroc, "repository": f"github.com/{REFERENCE_REPOSITORY}",
        "commit": released.commit, "files": {f.name: {"path": f.path, "git_blob_sha1": f.blob_sha1}
                                             for f in released.files}})


def released_overrides(released: ReleasedSet) -> list[str]:
    """`--set` assignments that score a released model set: its dataset and its context_of_num."""
    return [f"shared_parameters.dataset_name={released.dataset}",
            f"{released.dataset}.context_of_num={released.context_of_num}"]


def describe(released: ReleasedSet) -> dict:
    """What metrics.json and report.html record about a released model that was scored."""
    return {"name": released.name, "variant": released.variant, "context_of_num": released.context_of_num,
            "released_auroc": released.released_auroc, "paper_auroc": released.paper_auroc,
            "source": f"github.com/{REFERENCE_REPOSITORY} at {released.commit}, {released.reference_folder}/"}


# ----------------------------------------------------------------------------- downloading

def fetch_released(released: ReleasedSet, root: Path, *, mirror: str | None = None, progress: bool = True,
                   timeout: float | None = None, folder: Path | None = None,
                   say: Callable[[str], None] = print) -> list[Path]:
    """Download the set's files under `root` (the repository folder), each verified by its blob SHA-1
    before it gets its name; return the files placed or found.

    `folder` replaces the set's default folder (`--dest`). A file already in place with the released
    bytes is kept. A model file there with other bytes is
    an error (it is not overwritten). Box files already in raw_datasets/<dataset>/ are never
    overwritten: one line says where they are and how to replace them, and the set is left as it is.
    """
    from utils.infra.download import TIMEOUT_S, download

    folder = Path(folder) if folder is not None else released.default_dir(root)
    there = {file: verify_or_none(file, released.destination(file, folder)) for file in released.files
             if released.destination(file, folder).is_file()}  # each file there hashed once
    foreign = [released.destination(file, folder) for file, error in there.items() if error is not None]
    if released.kind == "boxes" and foreign:
        say(f"{released.name}: box files are already in {folder} ({', '.join(p.name for p in foreign)}, not the "
            f"released ones) and are kept; to use the released boxes, move "
            f"{'them' if len(foreign) > 1 else 'it'} away and run `{released.fetch_command()}` again")
        return [released.destination(file, folder) for file in there]
    placed, failures = [], []
    for file in released.files:  # each file placed once verified; one that fails does not stop the others
        destination = released.destination(file, folder)
        if file in there:
            if there[file] is not None:
                failures.append(VECError(f"{destination} is already there but {there[file]}; delete it and run "
                                         f"`{released.fetch_command()}` again"))
                continue
            say(f"{released.name}: {destination} is already present and verified, skipped")
            placed.append(destination)
            continue
        url = released.url(file, mirror)
        try:
            what = download(url, destination, label=f"{released.name}/{file.name}",
                            manual=f"download {url} by hand and save it as {destination}",
                            check=lambda path, file=file: verify_file(file, path), progress=progress,
                            timeout=TIMEOUT_S if timeout is None else timeout, say=say)
        except VECError as err:
            failures.append(err)
            continue
        say(f"{released.name}: saved {destination} ({what})")
        placed.append(destination)
    if failures:
        more = f" ({len(failures) - 1} more file(s) of {released.name} failed too)" if len(failures) > 1 else ""
        raise VECError(f"{failures[0]}{more}")
    if released.kind == "model":
        write_marker(folder, released)
        say(f"{released.name}: complete; score it with `python test.py --model {folder}` "
            f"(after `python calc_img_inputs.py --split test --set shared_parameters.dataset_name={released.dataset}`)")
    return placed


def released_status(released: ReleasedSet, root: Path, folder: Path | None = None) -> str:
    """`missing`, `N of M files …`, `present, verified …` or what fails, for `python -m utils.weights list`."""
    from utils.infra.download import partial_bytes

    folder = Path(folder) if folder is not None else released.default_dir(root)
    states = []
    for file in released.files:
        path = released.destination(file, folder)
        if not path.is_file():
            done = partial_bytes(path)
            states.append(f"{file.name}: partial download ({done:,} bytes)" if done is not None else None)
            continue
        states.append("ok" if verify_or_none(file, path) is None else
                      f"{file.name}: present, NOT the released file"
                      + (" (your own box file, kept)" if released.kind == "boxes" else ""))
    if all(s == "ok" for s in states):
        return "present, verified (git blob SHA-1 of every file)"
    if all(s is None for s in states):
        return "missing"
    have = sum(s == "ok" for s in states)
    notes = [s for s in states if s not in (None, "ok")]
    return f"{have} of {len(states)} files present and verified" + (f"; {'; '.join(notes)}" if notes else "")
