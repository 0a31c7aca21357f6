"""The benchmark script runs end to end on a tiny setting and writes every section it promises."""

from __future__ import annotations

import json
import sys

import tomllib

from testkit.project import REPO_ROOT, run


def test_benchmark_smoke_run_writes_every_section(tmp_path):
    out = tmp_path / "results.json"
    proc = run([sys.executable, "-m", "benchmarks", "--quick", "--images", "12", "--skip", "train,sweep,dvc,memory",
                "--output", str(out)], REPO_ROOT)

    results = json.loads(out.read_text())
    assert {"machine", "versions", "config", "images", "resize", "train", "sweep", "dvc", "memory", "help",
            "table"} <= set(results)
    assert results["quick"] is True and results["config"]["repeats"] == 1
    assert {"tensorflow", "keras", "dvc"} <= set(results["versions"]) and results["machine"]["cores"] >= 1
    resize = results["resize"]
    assert resize["images"] == 12 and set(resize["images_per_s"]) == {"baseline", "stage", "stage_one_process"}
    assert all(stat["min"] <= stat["median"] <= stat["max"] for stat in resize["images_per_s"].values())
    assert all(results[name] == {"skipped": True} for name in ("train", "sweep", "dvc", "memory"))
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert set(results["help"]["seconds"]) == set(declared) and "painter-predict" in declared
    assert resize["quick"] is True and "date" in resize and set(resize["load_average"]) == {"before", "after"}
    assert "| resize, 12 images" in proc.stdout and results["table"] in proc.stdout
