"""The seed notebooks' recipe, cross-validated on the folds the pipeline's own cross-validation uses.

The frozen best (``presets/best.yaml``) is scored by ``train.cv_folds: 5`` over the 431 sample
paintings; its folds come from :func:`painter_id.model.crossval.fold_rows` with ``train.seed``.
This runs the notebooks' recipe (frozen MobileNet alpha 0.25 at 224 px, a softmax on its pooled
features, Adam, early stopping on 20% of the training paintings:
:func:`benchmarks.experiment_loop.notebook_fit`) on exactly those folds, so the two compare
paintings for paintings. Writes ``benchmarks/notebook_cv.json`` with the date, the machine and
every fold's accuracy and macro-F1. Needs ``../shared/artworks-sample`` and the MobileNet
weights file; about 2 minutes a fold on 2 cores.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.experiment_loop import notebook_fit
from benchmarks.run import MOBILENET_WEIGHTS, load_average, machine, utc_now, versions

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "artworks-sample"
RESULTS = REPO / "benchmarks" / "notebook_cv.json"
FOLDS = 5

log = logging.getLogger("benchmarks.notebook_cv")


def sample_split():
    """The sample paintings as a row list the pipeline's fold function accepts (no pixels needed)."""
    from painter_id.data.resized import Split

    with open(SAMPLE / "manifest.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    paths = [f"{row['artist']}/{row['file']}" for row in rows]
    artists = [row["artist"] for row in rows]
    return Split(np.zeros((len(rows), 1, 1, 3), np.uint8), paths, artists, [""] * len(rows))


def link_rows(split, rows: np.ndarray, dest: Path) -> Path:
    """``dest/<artist>/<file>`` links to the paintings of ``rows``: the notebooks' folder layout."""
    for row in rows:
        folder = dest / split.artists[row]
        folder.mkdir(parents=True, exist_ok=True)
        os.symlink(SAMPLE / "images" / split.paths[row], folder / Path(split.paths[row]).name)
    return dest


def mean_se(values: list[float]) -> dict:
    """Mean and standard error over the folds."""
    mean = sum(values) / len(values)
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))
    return {"mean": round(mean, 4), "se": round(se, 4)}


def main() -> None:
    """Run the recipe on each fold and write the figures."""
    from sklearn.metrics import f1_score

    from painter_id.core.params import parse_section
    from painter_id.model.crossval import fold_rows

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not SAMPLE.is_dir() or not MOBILENET_WEIGHTS.is_file():
        raise SystemExit(f"needs {SAMPLE} and {MOBILENET_WEIGHTS}")
    seed = parse_section("train", {}).seed
    split = sample_split()
    before, folds = load_average(), []
    for k, (train_rows, scored) in enumerate(fold_rows(split, FOLDS, seed), 1):
        with tempfile.TemporaryDirectory() as work:
            result = notebook_fit(link_rows(split, train_rows, Path(work) / "train"),
                                  link_rows(split, scored, Path(work) / "test"), MOBILENET_WEIGHTS)
        result["macro_f1"] = round(float(f1_score(result.pop("y_true"), result.pop("y_pred"), average="macro")), 4)
        log.info("fold %d/%d: %s", k, FOLDS, result)
        folds.append(result)
    RESULTS.write_text(json.dumps({
        "date": utc_now(), "machine": machine(), "versions": versions(),
        "load_average": {"before": before, "after": load_average()},
        "folds": f"stratified {FOLDS}-fold over the {len(split.paths)} sample paintings, train.seed {seed}",
        "accuracy": mean_se([f["test_accuracy"] for f in folds]),
        "macro_f1": mean_se([f["macro_f1"] for f in folds]),
        "per_fold": folds}, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s", RESULTS)


if __name__ == "__main__":
    main()
