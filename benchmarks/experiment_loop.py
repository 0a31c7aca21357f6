"""The experiment loop (issue #19): the README's best command end to end against the notebook recipe.

1. **Notebook recipe** (the reference, written here as the seed notebooks do it):
   ``keras.utils.image_dataset_from_directory`` over the training split's paintings, a frozen
   MobileNet (alpha 0.25, the ImageNet weights file) at 224 px, global average pooling and a
   softmax, Adam, early stopping on a 20% validation subset; timed fit, scored on the test split.
2. **The README's best command** from a fresh workspace (a temporary git + DVC repository, as
   the tests make): every stage run by ``dvc repro --single-item <stage>`` in order, each timed,
   so the end-to-end time comes with each stage's share.
3. **A queued sweep** over head params on the cached features (``model.l2`` x
   ``model.pooled_layers``, ``--sweep-points`` of them): ``dvc exp run --queue`` for each, then
   ``dvc queue start`` until the queue is empty.
4. **The floor** (``--floor-only`` runs just this): the same seven stages as a ``dvc.yaml`` whose
   commands only import what each stage needs and do no work, under ``dvc repro``; and
   ``import tensorflow, keras, mlflow`` alone in a fresh process. No pipeline of this shape,
   one process per stage, can end sooner on the machine.

Needs ``../shared/artworks-sample`` and the MobileNet weights file. Adds an
``experiment_loop`` entry to ``benchmarks/results.json`` (the other entries stay) with the
load average before and after, since the machine may be shared. Nothing asserts a time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from benchmarks.run import MOBILENET_WEIGHTS, RESULTS, SAMPLE, machine, timed, versions
from testkit.project import dvc, make_project, run, wait_for_queue

log = logging.getLogger("benchmarks.experiment_loop")

STAGES = ("source", "download", "split", "oversample", "resize", "train", "evaluate")
POOLED = "[conv_pw_5_relu, conv_pw_11_relu, conv_pw_12_relu]"
# README "Real paintings: results": the best command's -S params (paths filled in by best_params).
BEST = {"oversample": {"strategy": "none"}, "resize": {"image_size": 448},
        "model": {"backbone": "MobileNet", "alpha": 0.25, "frozen_layers": "all",
                  "pooled_layers": ["conv_pw_5_relu", "conv_pw_11_relu", "conv_pw_12_relu"], "dropout": 0.0,
                  "l2": 0.003},
        "train": {"flip": False, "learning_rate": 0.003, "epochs": 300, "validation_split": 0,
                  "early_stopping_patience": 60, "reduce_lr_patience": 20}}
SWEEP_L2 = ("0.001", "0.003", "0.01", "0.03", "0.1")
SWEEP_POOLED = ("[]", "[conv_pw_11_relu]", "[conv_pw_5_relu, conv_pw_11_relu]", POOLED)


def best_params(solver: str) -> dict:
    """The best command's params, with this machine's sample and weights, and ``train.head_solver``."""
    return {**BEST, "data": {"source": "path", "path": str(SAMPLE)},
            "model": {**BEST["model"], "weights": "file", "weights_file": str(MOBILENET_WEIGHTS)},
            "train": {**BEST["train"], "head_solver": solver}}


def pipeline(project: Path, env: dict) -> dict:
    """Each stage of the pipeline, in order, by ``dvc repro --single-item``: seconds per stage and the metrics."""
    seconds = {}
    for stage in STAGES:
        seconds[stage] = round(timed(lambda: dvc(project, "repro", "--single-item", stage, env=env)), 2)
    total = sum(seconds.values())
    return {"seconds": seconds, "total_s": round(total, 1),
            "share": {stage: round(value / total, 3) for stage, value in seconds.items()},
            "eval": json.loads((project / "metrics" / "eval.json").read_text()),
            "train": json.loads((project / "metrics" / "train.json").read_text())}


def artist_folders(project: Path, split: str, dest: Path) -> Path:
    """``dest/<artist>/<file>`` links to the paintings of ``data/split/<split>.csv``: the notebooks' folder layout."""
    import csv

    with open(project / "data" / "split" / f"{split}.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            folder = dest / row["artist"].replace(" ", "_")
            folder.mkdir(parents=True, exist_ok=True)
            os.symlink((project / row["path"]).resolve(), folder / Path(row["path"]).name)
    return dest


def notebook_recipe(project: Path, work: Path) -> dict:
    """The seed notebooks' recipe on the same split: frozen MobileNet-0.25 at 224 px, Adam, early stopping."""
    import keras
    import numpy as np

    start = time.perf_counter()
    train_dir = artist_folders(project, "train", work / "nb-train")
    test_dir = artist_folders(project, "test", work / "nb-test")
    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        train_dir, validation_split=0.2, subset="both", seed=42, image_size=(224, 224), batch_size=32)
    test_ds = keras.utils.image_dataset_from_directory(test_dir, image_size=(224, 224), batch_size=32, shuffle=False)
    base = keras.applications.MobileNet(input_shape=(224, 224, 3), alpha=0.25, include_top=False,
                                        weights=str(MOBILENET_WEIGHTS))
    base.trainable = False
    inputs = keras.Input((224, 224, 3))
    x = base(keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs), training=False)  # MobileNet's preprocess_input
    outputs = keras.layers.Dense(len(train_ds.class_names), activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True)
    fit_start = time.perf_counter()
    history = model.fit(train_ds, validation_data=val_ds, epochs=100, callbacks=[stop], verbose=0)
    fit_s = time.perf_counter() - fit_start
    y_true = np.concatenate([y for _, y in test_ds])
    y_pred = model.predict(test_ds, verbose=0).argmax(axis=1)
    return {"fit_s": round(fit_s, 1), "total_s": round(time.perf_counter() - start, 1),
            "epochs": len(history.history["loss"]), "test_accuracy": round(float(np.mean(y_true == y_pred)), 4),
            "n_test": int(len(y_true))}


def queued_sweep(project: Path, env: dict, points: int) -> dict:
    """``points`` head experiments queued, then run by one queue worker: the wall time until the queue is empty."""
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "best command"], project)
    grid = list(itertools.product(SWEEP_L2, SWEEP_POOLED))[:points]
    start = time.perf_counter()
    for l2, pooled in grid:
        dvc(project, "exp", "run", "--queue", "-S", f"model.l2={l2}", "-S", f"model.pooled_layers={pooled}", env=env)
    # The queue worker inherits the command's output pipes, so `queue start` returns only once
    # the queue is empty: give it the sweep's time, not the helper's 15 minutes.
    run([sys.executable, "-m", "dvc", "queue", "start"], project, env=env, timeout=3600)
    status = wait_for_queue(project, env=env, timeout=3600)
    seconds = time.perf_counter() - start
    return {"points": len(grid), "grid": [{"model.l2": penalty, "model.pooled_layers": p} for penalty, p in grid],
            "seconds": round(seconds, 1), "per_point_s": round(seconds / len(grid), 1),
            "succeeded": status.count("Success"), "failed": status.count("Failed")}


# What each stage has to import before doing anything: train and evaluate run a Keras model
# (evaluate on a fresh workspace runs the backbone over the test split) and log to MLflow.
FLOOR_IMPORTS = {"source": "numpy, PIL.Image", "download": "numpy, PIL.Image",
                 "split": "numpy, PIL.Image, sklearn.model_selection", "oversample": "numpy, PIL.Image",
                 "resize": "numpy, PIL.Image", "train": "tensorflow, keras, mlflow",
                 "evaluate": "tensorflow, keras, mlflow, sklearn.metrics"}


def import_floor(work: Path, repeats: int = 2) -> dict:
    """Seconds of ``dvc repro`` for the seven stages doing nothing but their imports, and of one TF import."""
    repo = work / "floor"
    repo.mkdir()
    run(["git", "init", "-q"], repo)
    dvc(repo, "init", "-q")
    stages, previous = {}, None
    for stage in STAGES:
        code = f"import {FLOOR_IMPORTS[stage]}; open('{stage}.done', 'w').write('1')"
        stages[stage] = {"cmd": f'{sys.executable} -c "{code}"', "outs": [f"{stage}.done"],
                         **({"deps": [previous]} if previous else {})}
        previous = f"{stage}.done"
    (repo / "dvc.yaml").write_text(json.dumps({"stages": stages}, indent=2), encoding="utf-8")
    env = {"TF_CPP_MIN_LOG_LEVEL": "2"}
    repro = []
    for _ in range(repeats):
        for leftover in [*repo.glob("*.done"), repo / "dvc.lock"]:
            leftover.unlink(missing_ok=True)
        repro.append(round(timed(lambda: dvc(repo, "repro", "-q", "--no-run-cache", env=env)), 1))
    one = [round(timed(lambda: run([sys.executable, "-c", f"import {FLOOR_IMPORTS['train']}"], repo, env=env)), 1)
           for _ in range(repeats)]
    return {"imports": FLOOR_IMPORTS, "dvc_repro_s": repro, "import_tensorflow_keras_mlflow_s": one}


def measure(work: Path, sweep_points: int) -> dict:
    """Load average, then the pipeline (L-BFGS and mini-batch head), the notebook recipe, the sweep."""
    load_before = os.getloadavg()
    result: dict = {"machine": machine(), "versions": versions()}
    for solver in ("minibatch", "lbfgs"):
        project = make_project(work / solver, best_params(solver))
        env = {"MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
        result[f"pipeline_{solver}"] = pipeline(project, env)
        log.info("pipeline (%s head): %s", solver, result[f"pipeline_{solver}"]["seconds"])
    result["notebook"] = notebook_recipe(project, work)
    log.info("notebook recipe: %s", result["notebook"])
    result["ratio_notebook_fit_to_pipeline"] = round(result["notebook"]["fit_s"] / result["pipeline_lbfgs"]["total_s"], 2)
    if sweep_points:
        result["sweep"] = queued_sweep(project, env, sweep_points)
        log.info("sweep: %s", result["sweep"])
    result["load_average"] = {"before": [round(v, 1) for v in load_before],
                              "after": [round(v, 1) for v in os.getloadavg()]}
    return result


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep-points", type=int, default=20, help="queued head experiments (0: no sweep)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results.json to add the entry to")
    parser.add_argument("--floor-only", action="store_true", help="measure only the floor (about a minute)")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # The floor needs neither: it runs no painting through anything.
    if not args.floor_only and (not (SAMPLE / "artists.csv").exists() or not MOBILENET_WEIGHTS.exists()):
        sys.exit(f"needs {SAMPLE} and {MOBILENET_WEIGHTS}")
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    with tempfile.TemporaryDirectory(prefix="painter-loop-") as folder:
        floor = import_floor(Path(folder))
        log.info("floor: %s", floor)
        result = results.get("experiment_loop", {}) if args.floor_only else measure(Path(folder), args.sweep_points)
    result["floor"] = {**floor, "measured_with_load_average": [round(v, 1) for v in os.getloadavg()]}
    results["experiment_loop"] = result
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
