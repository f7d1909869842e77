"""The code's layering, read from its source: the networks stand alone, the library keeps clear of what only the
tests and benchmarks use, and no modules import each other in a circle.

Every import statement counts, also those inside functions and `importlib.import_module("...")` calls
with a literal name: a lazy import still ties the two modules together.
"""
from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The repository's own code: these packages and the entry scripts at the top (calc_img_inputs.py, train.py, ...).
PACKAGES = ("FlowNet2_src", "models", "utils", "benchmarks", "support")
# Plain torch.nn: they may import each other, the standard library and third-party packages, nothing else of ours.
NETWORK_PACKAGES = ("FlowNet2_src", "models")
# The library (these packages and the entry scripts) runs without what the tests and benchmarks keep for themselves.
LIBRARY_PACKAGES = ("FlowNet2_src", "models", "utils")
NOT_LIBRARY = ("support", "tests", "benchmarks")


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for the packages above and the scripts (a package by its __init__.py)."""
    files = {path.stem: path for path in sorted(root.glob("*.py"))}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def imports_of(path: Path, module: str) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module name, names taken from it) for every import in the file; [] names for `import x`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: `from . import x` in a/b/c.py is `from a.b import x`
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.append((node.lineno, base, [alias.name for alias in node.names]))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")):
            found.append((node.lineno, node.args[0].value, []))
    return found


def _own_module(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of `name` that is one of our modules (`utils.flow.base.X` -> `utils.flow.base`)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of ours it imports. `from pkg import name` imports `pkg.name` when that is a
    module, else `pkg` (whose __init__ defines or re-exports `name`)."""
    modules = module_files(root)
    graph = {}
    for module, path in modules.items():
        targets = set()
        for _, base, names in imports_of(path, module):
            for name in [f"{base}.{n}" for n in names if f"{base}.{n}" in modules] or [base]:
                target = _own_module(name, modules)
                if target is not None and target != module:
                    targets.add(target)
        graph[module] = targets
    return graph


def forbidden_imports(root: Path, importers: set[str], forbidden: set[str]) -> list[str]:
    """`file:line imports name` for each import, by one of the modules `importers`, of a module whose top-level
    package (or script) is in `forbidden`."""
    violations = []
    for module, path in module_files(root).items():
        if module not in importers:
            continue
        for line, base, _ in imports_of(path, module):
            if base.split(".")[0] in forbidden:
                violations.append(f"{path.relative_to(root)}:{line} imports {base}")
    return violations


def network_violations(root: Path) -> list[str]:
    """Imports in FlowNet2_src/ and models/ of anything of ours that is not a network package."""
    ours = set(PACKAGES) | {"tests"} | {path.stem for path in root.glob("*.py")}
    networks = {module for module in module_files(root) if module.split(".")[0] in NETWORK_PACKAGES}
    return forbidden_imports(root, networks, ours - set(NETWORK_PACKAGES))


def library_modules(root: Path) -> set[str]:
    """The modules of utils/, models/, FlowNet2_src/ and the entry scripts at the top."""
    return {module for module, path in module_files(root).items()
            if module.split(".")[0] in LIBRARY_PACKAGES or path.parent == root}


def library_violations(root: Path) -> list[str]:
    """Imports in the library of support/, tests/ or benchmarks/."""
    return forbidden_imports(root, library_modules(root), set(NOT_LIBRARY))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules, the first repeated at the end), or None."""
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        return list(reversed(err.args[1]))  # graphlib lists it against the edges' direction
    return None


def test_networks_import_nothing_from_the_rest_of_the_code():
    assert network_violations(ROOT) == []


def test_the_library_imports_nothing_of_the_tests_benchmarks_or_support():
    library = library_modules(ROOT)
    # It reads the whole library and nothing else: else an empty set would pass.
    assert {"train", "test", "calc_img_inputs", "utils.infra.video_frames", "models", "FlowNet2_src.flownet2"} <= library
    assert not any(module.split(".")[0] in NOT_LIBRARY for module in library)
    assert library_violations(ROOT) == []


def test_no_import_cycles():
    graph = import_graph(ROOT)
    # The graph holds what it should: else an empty graph would pass.
    assert {"train", "test", "calc_img_inputs", "utils.config", "models", "FlowNet2_src"} <= graph.keys()
    assert "utils.pipeline" in graph["train"] and "FlowNet2_src" in graph["utils.flow.flownet2"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


BASE = {"train.py": "from utils.pipeline import run\n", "utils/__init__.py": "", "utils/pipeline.py": "import models\n",
        "models/__init__.py": "from models.net import Net\n", "models/net.py": "import torch\n",
        "FlowNet2_src/__init__.py": "from .flownet2 import FlowNet2\n", "FlowNet2_src/flownet2.py": "import torch\n",
        # support and benchmarks may use the library and each other; the tests may use all of it
        "support/__init__.py": "", "support/camera.py": "from utils.pipeline import run\n",
        "benchmarks/__init__.py": "", "benchmarks/speed.py": "from support.camera import serve\nimport train\n",
        "tests/test_camera.py": "from support import camera\nfrom benchmarks import speed\n"}


def test_the_checks_see_a_clean_tree_as_clean(tmp_path):
    root = _write(tmp_path, BASE)
    assert network_violations(root) == [] and library_violations(root) == [] and find_cycle(import_graph(root)) is None
    assert import_graph(root)["FlowNet2_src"] == {"FlowNet2_src.flownet2"}  # relative import resolved


@pytest.mark.parametrize("line, imported", [
    ("from utils.pipeline import run", "utils.pipeline"), ("import utils", "utils"),
    ("from tests.matching import assert_same_boxes", "tests.matching"), ("import train", "train"),
    ("from benchmarks import speed", "benchmarks"), ("importlib.import_module('utils.pipeline')", "utils.pipeline"),
])
def test_a_network_importing_the_application_is_caught(tmp_path, line, imported):
    root = _write(tmp_path, {**BASE, "models/net.py": f"import torch\n\n\ndef build():\n    {line}\n"})
    assert network_violations(root) == [f"models/net.py:5 imports {imported}"]


@pytest.mark.parametrize("file, line, imported", [
    ("utils/pipeline.py", "from support.camera import serve", "support.camera"),
    ("utils/pipeline.py", "import support", "support"),
    ("utils/pipeline.py", "from tests.test_camera import clip", "tests.test_camera"),
    ("utils/pipeline.py", "importlib.import_module('benchmarks.speed')", "benchmarks.speed"),
    ("train.py", "from support import camera", "support"),  # an entry script
    ("FlowNet2_src/flownet2.py", "from benchmarks import speed", "benchmarks"),
])
def test_the_library_importing_support_tests_or_benchmarks_is_caught(tmp_path, file, line, imported):
    root = _write(tmp_path, {**BASE, file: f"import torch\n\n\ndef build():\n    {line}\n"})
    assert library_violations(root) == [f"{file}:5 imports {imported}"]


@pytest.mark.parametrize("files, cycle", [
    # a lazy import inside a function closes the circle too
    ({"utils/pipeline.py": "import utils.config\n", "utils/config.py": "def f():\n    from utils import pipeline\n"},
     {"utils.config", "utils.pipeline"}),
    # a submodule importing the package that re-exports it
    ({"models/net.py": "from models import Net\n"}, {"models", "models.net"}),
    ({"utils/a.py": "import utils.b\n", "utils/b.py": "from . import c\n", "utils/c.py": "from utils.a import x\n"},
     {"utils.a", "utils.b", "utils.c"}),
])
def test_an_import_cycle_is_caught(tmp_path, files, cycle):
    found = find_cycle(import_graph(_write(tmp_path, {**BASE, **files})))
    assert found is not None and found[0] == found[-1] and set(found) == cycle
