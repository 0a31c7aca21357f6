"""dvc.yaml lists exactly the code each stage runs: its module, and the library folders it imports from.

The imports are read with ``ast``, followed through other project modules, and include the
packages' ``__init__.py`` files that Python runs on the way. A stage depends on its own
module and ``painter_id/__init__.py`` as files, and on each concern folder of the library
(``painter_id/data``, ``painter_id/model``...) it imports anything from as a whole: an edit to
any file the stage runs must make DVC rerun it (a folder is coarser, never blind), and a
folder the stage no longer imports from must not be listed. (That DVC then really marks the
stage changed is checked in the pipeline tests, on a module download imports.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from testkit.project import REPO_ROOT

PACKAGES = ("stages", "painter_id")


def module_file(name: str, root: Path = REPO_ROOT) -> Path | None:
    """The file of project module ``name`` (``painter_id.x`` or a package), or None for a name inside one."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    path = root.joinpath(*parts)
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def direct_imports(path: Path, root: Path = REPO_ROOT) -> set[Path]:
    """Project files that importing ``path`` runs directly: imported modules and their packages' ``__init__``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from painter_id import synthetic` imports a module; `from x import name` a name.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    files = set()
    for name in names:
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            found = module_file(".".join(parts[:end]), root)
            if found is not None:
                files.add(found)
    return files


def stage_code(module: str, root: Path = REPO_ROOT) -> set[str]:
    """Every project file ``python -m <module>`` runs, relative to ``root``, through any depth of imports."""
    start = module_file(module, root)
    assert start is not None, f"{module} is not a project module"
    todo = {start, *direct_imports(start, root), root / module.split(".")[0] / "__init__.py"}
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo |= direct_imports(path, root) - seen
    return {path.relative_to(root).as_posix() for path in seen}


def dependency_of(path: str) -> str:
    """The ``dvc.yaml`` dependency that covers project file ``path``: its concern folder, or the file itself."""
    parts = path.split("/")
    return "/".join(parts[:2]) if parts[0] == "painter_id" and len(parts) > 2 else path


def listed_code(stage: dict) -> set[str]:
    return {dep for dep in stage.get("deps", []) if dep.endswith(".py") or dep.startswith(PACKAGES)}


def pipeline() -> dict:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


@pytest.mark.parametrize("name", sorted(pipeline()))
def test_dvc_yaml_lists_exactly_the_code_each_stage_imports(name):
    stage = pipeline()[name]
    module = stage["cmd"].split("python -m ", 1)[1].split()[0]
    expected, listed = {dependency_of(path) for path in stage_code(module)}, listed_code(stage)
    assert not expected - listed, f"{name}: dvc.yaml misses the code it imports: {sorted(expected - listed)}"
    assert not listed - expected, f"{name}: dvc.yaml lists code it no longer imports: {sorted(listed - expected)}"


def test_the_import_walk_follows_modules_through_other_modules(tmp_path):
    # A stage importing a module that imports another (inside a function, as lazy imports
    # are) must depend on all three, and not on a module nobody imports.
    (tmp_path / "stages").mkdir()
    (tmp_path / "painter_id").mkdir()
    (tmp_path / "stages" / "__init__.py").write_text('"""Stages."""\n')
    (tmp_path / "painter_id" / "__init__.py").write_text('"""Library."""\n')
    (tmp_path / "painter_id" / "core").mkdir()
    (tmp_path / "stages" / "a.py").write_text("from painter_id import b\nfrom painter_id.core.errors import Oops\n")
    (tmp_path / "painter_id" / "b.py").write_text("def f():\n    import painter_id.c\n")
    (tmp_path / "painter_id" / "c.py").write_text("import os\n")
    (tmp_path / "painter_id" / "core" / "errors.py").write_text("class Oops(Exception): pass\n")
    (tmp_path / "painter_id" / "unused.py").write_text("")
    assert stage_code("stages.a", tmp_path) == {
        "stages/__init__.py", "stages/a.py", "painter_id/__init__.py", "painter_id/b.py", "painter_id/c.py",
        "painter_id/core/errors.py",
    }
