"""Every path the pipeline reads or writes is named once in code (painter_id.core.paths) and dvc.yaml agrees."""

from __future__ import annotations

from pathlib import Path

import yaml

from painter_id.core import paths
from testkit.project import REPO_ROOT


def named_paths() -> set[str]:
    return {value.as_posix() for value in vars(paths).values() if isinstance(value, Path)}


def pipeline_files(pipeline: dict) -> set[str]:
    """The data, model and metrics files of ``dvc.yaml``: outs, metrics, plots and non-code deps."""
    found = set()
    for stage in pipeline["stages"].values():
        entries = [*stage.get("deps", []), *stage.get("outs", []), *stage.get("metrics", []), *stage.get("plots", [])]
        for entry in entries:
            name = next(iter(entry)) if isinstance(entry, dict) else entry
            if not name.startswith(("stages/", "painter_id", "${")):
                found.add(name)
    return found


def test_every_path_in_dvc_yaml_is_named_in_the_paths_module():
    pipeline = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    missing = pipeline_files(pipeline) - named_paths()
    assert not missing, f"dvc.yaml names paths that painter_id/core/paths.py does not: {sorted(missing)}"


def test_no_module_spells_out_a_pipeline_path_the_paths_module_names():
    # Path("data/resized") written again elsewhere would be a second home for the fact.
    for path in (REPO_ROOT / "painter_id").rglob("*.py"):
        if path.name == "paths.py":
            continue
        text = path.read_text(encoding="utf-8")
        for name in named_paths():
            assert f'Path("{name}")' not in text, f"{path.relative_to(REPO_ROOT)} spells out {name}: use painter_id.core.paths"


def test_the_placeholder_for_unused_sources_is_a_tracked_text_file_not_code():
    assert (REPO_ROOT / paths.UNUSED_FILE).is_file() and paths.UNUSED_FILE.suffix == ".txt"
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert params["data"]["path"] == params["data"]["url"] == paths.UNUSED_FILE.as_posix()
