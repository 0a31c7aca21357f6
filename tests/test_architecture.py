"""The layout shows the architecture: stages/ holds exactly the DVC stages, painter_id/ the library by concern."""

from __future__ import annotations

import ast
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from painter_id.core.errors import PipelineError
from painter_id.model import model_files
from painter_id.model.backbones import Preprocess
from testkit.project import REPO_ROOT

MAX_FUNCTION_LINES = 60
MAX_STAGE_LINES = 150
# Library folders that are no concern of their own: none. Every folder of painter_id/ is one.
CONCERNS = ("core", "sources", "data", "model", "evaluation", "tracking", "serving", "cli")


def modules(package: str) -> list[Path]:
    """Every module of ``package`` (a folder of the repository), its subpackages' too, but ``__init__.py``."""
    return sorted(p for p in (REPO_ROOT / package).rglob("*.py") if p.name != "__init__.py" and "__pycache__" not in p.parts)


def imported(path: Path) -> set[str]:
    """Dotted names of the project modules ``path`` imports (``stages.x``, ``painter_id.core.y``...)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("stages", "painter_id")}


def test_stages_folder_holds_exactly_the_dvc_stages():
    pipeline = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    commands = {stage["cmd"] for stage in pipeline["stages"].values()}
    assert commands == {f"python -m stages.{p.stem}" for p in modules("stages")}


def test_stages_are_short_and_nothing_outside_them_imports_one():
    for path in modules("stages"):
        others = {name for name in imported(path) if name.startswith("stages")}
        assert not others, f"{path.name} imports {others}"
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= MAX_STAGE_LINES, f"{path.name} has {lines} lines: move what is not reading, calling, writing"
    # Tests and benchmarks run a stage (testkit.project.stage_main, `python -m stages.x`), never import one.
    for folder in ("painter_id", "tests", "testkit", "benchmarks"):
        for path in modules(folder):
            assert not any(name.startswith("stages") for name in imported(path)), path


def test_the_library_is_one_folder_per_concern_each_saying_what_it_holds():
    package = REPO_ROOT / "painter_id"
    folders = sorted(p.name for p in package.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders == sorted(CONCERNS)
    assert [p.name for p in package.glob("*.py")] == ["__init__.py"]  # no module outside a concern
    for name in CONCERNS:
        docstring = ast.get_docstring(ast.parse((package / name / "__init__.py").read_text(encoding="utf-8")))
        assert docstring and len(docstring) > 80, f"painter_id/{name}/__init__.py must say what belongs there"
        assert f":mod:`painter_id.{name}`" in (package / "__init__.py").read_text(encoding="utf-8")


def test_test_folders_mirror_the_package_folders():
    tests = REPO_ROOT / "tests"
    folders = {p.name for p in tests.iterdir() if p.is_dir() and p.name != "__pycache__"}
    # pipeline/: end-to-end runs of the whole pipeline under dvc, no single concern's;
    # docs/: the user docs' statements, checked against the code and a real run.
    assert folders - {"pipeline", "docs"} == set(CONCERNS)
    names = [p.name for p in tests.rglob("test_*.py")]
    assert len(names) == len(set(names)), "test file names are unique, so a name says its subject"


def test_no_function_is_longer_than_a_reader_can_hold():
    for package in ("stages", "painter_id"):
        for path in modules(package):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    assert length <= MAX_FUNCTION_LINES, f"{path.name}:{node.lineno} {node.name} has {length} lines"


def test_every_library_module_says_what_it_holds():
    for path in modules("painter_id"):
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert docstring, f"{path.name} has no module docstring"


def tiny_model() -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    x = Preprocess("tf", name="preprocess")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def rewrite_config(src: Path, dest: Path, old: str, new: str) -> None:
    """Copy a .keras file, replacing ``old`` by ``new`` in its config.json (as a model of another version wrote it)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                data = data.decode("utf-8").replace(old, new).encode("utf-8")
            zout.writestr(item, data)


def test_models_saved_before_the_move_still_load(tmp_path):
    model = tiny_model()
    path = tmp_path / "model.keras"
    model.save(path)
    assert '"painter_id>Preprocess"' in zipfile.ZipFile(path).read("config.json").decode()
    old = tmp_path / "old.keras"
    # What a model saved when the layer lived in stages/backbones.py names.
    rewrite_config(path, old, '"painter_id>Preprocess"', '"stages>Preprocess"')
    rewrite_config(old, tmp_path / "old2.keras", '"painter_id.model.backbones"', '"stages.backbones"')

    pixels = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype("float32")
    expected = model.predict(pixels, verbose=0)
    for name in ("model.keras", "old2.keras"):
        loaded = model_files.load_model(tmp_path / name)
        assert isinstance(loaded.get_layer("preprocess"), Preprocess)
        np.testing.assert_allclose(loaded.predict(pixels, verbose=0), expected, atol=1e-6)


def test_a_model_naming_an_unknown_layer_is_a_one_line_retrain_message(tmp_path):
    path = tmp_path / "model.keras"
    tiny_model().save(path)
    foreign = tmp_path / "foreign.keras"
    rewrite_config(path, foreign, '"painter_id>Preprocess"', '"somebody>Preprocess"')
    rewrite_config(foreign, tmp_path / "foreign2.keras", '"painter_id.model.backbones"', '"somebody.layers"')
    with pytest.raises(PipelineError, match=r"foreign2.keras: cannot be loaded .*; run `dvc repro train`"):
        model_files.load_model(tmp_path / "foreign2.keras")
