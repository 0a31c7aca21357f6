"""The data stages under the real `dvc repro` in a temporary git + DVC repository."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import yaml

from testkit.project import dvc, make_project

SMALL_DATA = {
    "data": {"synthetic_artists": 4, "synthetic_images": 80},
    "oversample": {"min_count": 12},
    "resize": {"image_size": 32},
}


def _rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def set_image_size(project, side: int) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    params["resize"]["image_size"] = side
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def _ran(output: str) -> set[str]:
    return {stage for stage in ("download", "split", "oversample", "resize") if f"Running stage '{stage}'" in output}


@pytest.mark.slow
def test_data_stages_under_dvc_repro(tmp_path):
    project = make_project(tmp_path / "project", SMALL_DATA)

    first = dvc(project, "repro", "resize")
    assert _ran(first.stdout) == {"download", "split", "oversample", "resize"}

    manifest = _rows(project / "data/raw/manifest.csv")
    train, test = _rows(project / "data/split/train.csv"), _rows(project / "data/split/test.csv")
    assert len(train) + len(test) == len(manifest)
    assert not {r["sha256"] for r in test} & {r["sha256"] for r in train}
    resized_train = np.load(project / "data/resized/train.npy", mmap_mode="r")
    resized_test = np.load(project / "data/resized/test.npy", mmap_mode="r")
    assert resized_train.shape[1:] == (32, 32, 3) and resized_train.dtype == np.uint8
    assert resized_train.shape[0] == len(_rows(project / "data/oversampled/train.csv"))
    assert resized_test.shape[0] == len(test)

    # Nothing changed: nothing runs but the source stage, which finds the same fingerprint.
    again = dvc(project, "repro", "resize")
    assert _ran(again.stdout) == set() and "Running stage 'source'" in again.stdout
    assert "Stage 'download' didn't change" in again.stdout and "Stage 'resize' didn't change" in again.stdout

    # A new resize.image_size reruns resize only, not the stages before it.
    set_image_size(project, 40)
    status = dvc(project, "status", "--json")
    # source is always changed: it looks at the data source on every repro.
    assert set(yaml.safe_load(status.stdout)) == {"source", "resize", "features", "train", "evaluate"}
    rerun = dvc(project, "repro", "resize")
    assert _ran(rerun.stdout) == {"resize"}
    assert np.load(project / "data/resized/train.npy", mmap_mode="r").shape[1:] == (40, 40, 3)

    # The earlier size again: the run cache restores its arrays instead of resizing (the
    # param is not named `size`, which DVC 3.67 leaves out of the run-cache key, dvc#10296).
    set_image_size(project, 32)
    back = dvc(project, "repro", "resize")
    assert _ran(back.stdout) == set() and "Stage 'resize' is cached - skipping run" in back.stdout
    assert np.load(project / "data/resized/train.npy", mmap_mode="r").shape[1:] == (32, 32, 3)
