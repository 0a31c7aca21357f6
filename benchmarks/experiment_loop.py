"""The experiment loop (issues #19, #32): the best command, a head-only experiment and a queued sweep, against the floor.

1. **The best command** from a fresh workspace (a temporary git + DVC repository, as the tests
   make), exactly as the README gives it: one ``dvc exp run -S ...``, timed end to end. Every
   stage's process records when it started and ended and which modules it loaded
   (:data:`IMPORT_HOOK`), so the time comes with each stage's share and DVC's own.
2. **A head-only experiment** right after it: ``dvc exp run -S model.l2=0.01`` (which stages
   ran, each one's time, the whole).
3. **The MLflow Model of one point**: the train stage's ``log_model`` on that workspace's model,
   in a fresh process as in the stage, against MLflow's own ``pyfunc.log_model`` (which loads
   the model back and predicts its input example to validate the serving input); both checked
   to carry the signature and the input example.
4. **The queued head sweep** over ``model.l2`` x ``model.pooled_layers`` (20 points: one
   ``dvc exp run --queue`` with a Hydra grid), run by ``dvc queue start -j 1`` and again by
   ``-j 2``, each from the best command's run cache: wall time, Success/Failed, FINISHED MLflow
   runs, and how many points ran ``features`` (the rest got it from DVC's run cache).
5. **The floor** (``--floor-only`` runs just this, from the imports recorded last time): the
   same eight stages as a ``dvc.yaml`` whose commands only import what each stage loaded in 1
   (every module, in the order it loaded them, its stage module last) and end as the
   stages end, under the same ``dvc exp run``; and each stage's imports alone in a fresh
   process. No pipeline of this shape, one process per stage, can end sooner on the machine,
   even one that computes nothing.
6. **The forward pass alone** (:func:`forward_probe`, measured right after 1): the frozen
   backbone over the features stage's paintings in a warm process, nothing else. The floor
   plus it is the least time the best command can take on the machine, whatever code
   surrounds Keras (``least_possible``, against the target of 1.3x the floor).
7. ``--notebook``: the seed notebooks' recipe on the same split (issue #19's reference).

Needs ``../shared/artworks-sample`` and the MobileNet weights file (``--quick`` runs without
them, on synthetic paintings and random weights). Adds an ``experiment_loop`` entry
(``experiment_loop_cv`` for ``--command cv``) to ``benchmarks/results.json`` (the entry it
replaces kept as ``previous``; the other entries stay) with the date, the machine and the load
average before and after, since the machine may be shared. Nothing asserts a time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

from benchmarks.run import (
    MOBILENET_WEIGHTS,
    REPO,
    RESULTS,
    SAMPLE,
    commit_all,
    frozen_mobilenet,
    load_average,
    machine,
    read_results,
    sample_data,
    save_entry,
    spread,
    stages_run,
    timed,
    tracking_env,
    utc_now,
    versions,
    with_history,
    write_results,
)
from testkit.project import dvc, make_project, run, wait_for_queue

log = logging.getLogger("benchmarks.experiment_loop")

STAGES = ("source", "download", "split", "oversample", "resize", "features", "train", "evaluate")
POOLED = ["conv_pw_5_relu", "conv_pw_11_relu", "conv_pw_12_relu"]
# The README's best command on the default 80/20 split (the figures this benchmark replaces
# measured it): the head is solved by L-BFGS on the features, so no epoch or learning-rate param.
BEST = {"oversample": {"strategy": "none"}, "resize": {"image_size": 448},
        "model": {"backbone": "MobileNet", "alpha": 0.25, "frozen_layers": "all", "pooled_layers": POOLED,
                  "dropout": 0.0, "l2": 0.003},
        "train": {"flip": False, "validation_split": 0}}
# `--command cv`: the README's recommended best, 5 folds over every painting at two scales.
CV = {"split": {"test_size": 0}, "train": {"cv_folds": 5}, "model": {"scales": [1.0, 1.5]}}
# The results.json entry of each command: one's figures never push the other's into history.
ENTRY = {"holdout": "experiment_loop", "cv": "experiment_loop_cv"}
# Beside results.json: the modules each stage of the last loop loaded, which the floor imports.
IMPORTS_FILE = "floor_imports.json"
HEAD_ONLY_L2 = 0.01
SWEEP_L2 = (0.001, 0.003, 0.01, 0.03, 0.1)
SWEEP_POOLED = ([], ["conv_pw_11_relu"], ["conv_pw_5_relu", "conv_pw_11_relu"], POOLED)
# Packages whose import costs seconds: the floor's summary names which of them each stage loads.
HEAVY = ("tensorflow", "keras", "mlflow", "sklearn", "scipy", "matplotlib", "pandas")

# Put on PYTHONPATH as sitecustomize.py (nothing else in this environment has one), so every
# Python process of the measured commands loads it: a stage's process (`python -m
# stages.<name>`, its __main__) writes, as it exits, when it started and ended and the modules
# it loaded, into $PAINTER_BENCH_IMPORTS/<experiment>-<stage>.json. A stage DVC skipped or
# restored from its run cache writes nothing. It costs the stage one small file.
IMPORT_HOOK = '''"""Written by benchmarks/experiment_loop.py: a stage's process records its times and modules."""
import atexit, json, os, sys, time

_STARTED = time.time()


def _record():
    stage = getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", "") or ""
    if stage.startswith("stages."):
        name = os.environ.get("DVC_EXP_NAME") or "workspace"
        path = os.path.join(os.environ["PAINTER_BENCH_IMPORTS"], f"{name}-{stage[7:]}.json")
        with open(path, "w") as out:
            json.dump({"started": _STARTED, "ended": time.time(), "modules": list(sys.modules)}, out)


if os.environ.get("PAINTER_BENCH_IMPORTS"):
    atexit.register(_record)
'''

# One stage's imports, then the stages' own exit (painter_id.core.runner.leave: no interpreter
# teardown). A recorded module only its parent can load (Cython's cython_runtime) is skipped.
FLOOR_SCRIPT = '''import importlib, json, sys

stage = sys.argv[1]
for name in json.load(open("imports.json"))[stage]:
    try:
        importlib.import_module(name)
    except Exception:
        pass
open(f"{stage}.done", "w").write("1")
from painter_id.core.runner import leave

leave(0)
'''


@dataclass(frozen=True)
class Loop:
    """Sizes of the loop; ``--quick`` shrinks them to a smoke run of a few minutes."""

    artists: Optional[int] = None         # None: every sample painting
    per_artist: Optional[int] = None
    image_size: int = 448
    sweep_l2: tuple = SWEEP_L2
    sweep_pooled: tuple = SWEEP_POOLED
    jobs: tuple = (1, 2)                   # `dvc queue start -j`, one sweep each
    repeats: int = 3                       # of the floor and of the MLflow Model's logging


FULL = Loop()
QUICK = Loop(artists=3, per_artist=8, image_size=64, sweep_l2=SWEEP_L2[:2], sweep_pooled=SWEEP_POOLED[-2:], repeats=1)


# ---------------------------------------------------------------- commands

def override(value) -> str:
    """A param value as ``dvc exp run -S`` takes it (Hydra's override syntax)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override(item) for item in value) + "]"
    return str(value)


def set_params(params: dict) -> list[str]:
    """``-S section.key=value`` for every param of ``params`` (``{section: {key: value}}``)."""
    return [arg for section, values in params.items() for key, value in values.items()
            for arg in ("-S", f"{section}.{key}={override(value)}")]


def best_params(command: str, data: dict) -> dict:
    """The best command's params (``holdout`` or ``cv``), with these paintings and this machine's weights."""
    params = {**BEST, "data": data, "model": {**BEST["model"], **frozen_mobilenet()}}
    if command == "cv":
        params = {section: {**params.get(section, {}), **CV.get(section, {})} for section in dict.fromkeys([*params, *CV])}
    return params


def hooked(env: dict, folder: Path) -> dict:
    """``env`` with :data:`IMPORT_HOOK` on the path, recording into ``folder`` (made empty)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    hook = folder.parent / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(IMPORT_HOOK, encoding="utf-8")
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH")) if p)
    return {**env, "PYTHONPATH": path, "PAINTER_BENCH_IMPORTS": str(folder)}


def recorded(folder: Path) -> dict[str, dict]:
    """What :data:`IMPORT_HOOK` wrote into ``folder``, by ``<experiment>-<stage>``."""
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.json"))}


def timed_command(project: Path, args: list[str], env: dict, folder: Path) -> dict:
    """Run ``dvc <args>`` once, hooked: its wall time, the stages it ran, each one's seconds and share, DVC's own."""
    start = time.perf_counter()
    out = dvc(project, *args, env=hooked(env, folder)).stdout
    total = time.perf_counter() - start
    records = {name.rpartition("-")[2]: record for name, record in recorded(folder).items()}
    stages = {stage: round(records[stage]["ended"] - records[stage]["started"], 2)
              for stage in STAGES if stage in records}
    return {"command": "dvc " + " ".join(args), "seconds": round(total, 1), "ran": stages_run(out),
            "stage_s": stages, "share": {stage: round(value / total, 3) for stage, value in stages.items()},
            "dvc_and_between_s": round(total - sum(stages.values()), 1)}


# ---------------------------------------------------------------- 1-3. the best command, one head point, its Model

def best_command(project: Path, env: dict, params: dict, work: Path) -> tuple[dict, dict[str, list[str]]]:
    """The best command in a fresh workspace, and what each stage imported (for the floor)."""
    result = timed_command(project, ["exp", "run", *set_params(params)], env, work / "imports-best")
    imports = {name.rpartition("-")[2]: floor_imports(name.rpartition("-")[2], record["modules"])
               for name, record in recorded(work / "imports-best").items()}
    result["eval"] = json.loads((project / "metrics" / "eval.json").read_text(encoding="utf-8"))
    result["train"] = json.loads((project / "metrics" / "train.json").read_text(encoding="utf-8"))
    return result, imports


def floor_imports(stage: str, modules: list[str]) -> list[str]:
    """What the floor of ``stage`` imports: every module the stage's process loaded, in the order it loaded them.

    Modules a stage imports inside a function (the MLflow store, TensorFlow in ``features``)
    count too: an import is paid wherever it happens. Not the hook itself, nor ``__main__``,
    whose code is the stage module, imported last.
    """
    own = [m for m in modules if m not in ("__main__", "sitecustomize")]
    return [*own, f"stages.{stage}"]


def log_model_probe(validate: bool) -> None:
    """Log ``models/`` of the project in the working directory once more, as train does; print seconds and contents.

    Run in a fresh process (:func:`log_model_cost`), as each point's train stage is, so the
    import of :mod:`painter_id.tracking.mlflow_model` counts. ``validate``: MLflow's own
    ``mlflow.pyfunc.log_model``, which loads the model back and predicts its input example.
    """
    start = time.perf_counter()
    import mlflow

    from painter_id.core.compat import mlflow_tracking_uri
    from painter_id.data import resized
    from painter_id.model import model_files
    from painter_id.tracking import mlflow_model

    imported = time.perf_counter() - start
    if validate:
        mlflow_model.log_pyfunc_model = mlflow.pyfunc.log_model
    record = model_files.read_run()
    example = mlflow_model.example_image(resized.load_split("train").images)
    start = time.perf_counter()
    model_id = mlflow_model.log_model(record["tracking_uri"], record["run_id"], example)
    logged = time.perf_counter() - start
    with mlflow_tracking_uri(record["tracking_uri"]):
        info = mlflow.models.get_model_info(f"models:/{model_id}")
    print(json.dumps({"import_s": imported, "log_model_s": logged, "signature": info.signature is not None,
                      "input_example": info.saved_input_example_info is not None}))


def log_model_cost(project: Path, env: dict, repeats: int) -> dict:
    """:func:`log_model_probe` ``repeats`` times each way, a fresh process each time."""
    result = {}
    for name, validate in (("train stage (no re-validation)", False), ("mlflow.pyfunc.log_model", True)):
        code = f"from benchmarks.experiment_loop import log_model_probe; log_model_probe({validate})"
        # The project's own painter_id copy first (the working directory), this repository's benchmarks after it.
        probes = [json.loads(run([sys.executable, "-c", code], project, env={**env, "PYTHONPATH": str(REPO)})
                             .stdout.strip().splitlines()[-1]) for _ in range(repeats)]
        result[name] = {"log_model_s": spread([p["log_model_s"] for p in probes]),
                        "import_s": spread([p["import_s"] for p in probes]),
                        "carries_signature": all(p["signature"] for p in probes),
                        "carries_input_example": all(p["input_example"] for p in probes)}
    return result


def forward_probe(repeats: int) -> None:
    """The backbone's forward pass over the features stage's three arrays, nothing else; print seconds.

    Run in the best command's project after it (:func:`forward_pass`): the extractor is built
    as the stage builds it, traced once on one painting (not timed), then run over the
    training, test and mirrored test paintings in the stage's batches, ``repeats`` times; the
    fastest counts. It is the least work any pipeline computing these features does, whatever
    it is written in around Keras, so the floor plus it is the least time the best command can
    take on this machine.
    """
    import numpy as np

    from painter_id.core.params import load_all
    from painter_id.data import resized
    from painter_id.model import features

    params = load_all()
    train, test = resized.load_split("train"), resized.load_split("test", allow_empty=True)
    net = features.feature_network(params, train.size, len(resized.class_names(train.artists)))
    extractor = features.extractor_model(net.model)
    run, width, batch = features.forward(extractor), int(extractor.output.shape[-1]), params.runtime.predict_batch_size
    arrays = [train.images, test.images, features.mirrored(test.images)]
    run(np.asarray(train.images[:1], dtype=np.float32))
    seconds = [timed(lambda: [features.compute(run, images, batch, width, "forward") for images in arrays])
               for _ in range(repeats)]
    print(json.dumps({"images": sum(len(images) for images in arrays), "seconds": seconds}))


def forward_pass(project: Path, env: dict, repeats: int) -> dict:
    """:func:`forward_probe` in a fresh process in ``project``: the fastest of ``repeats`` passes."""
    code = f"from benchmarks.experiment_loop import forward_probe; forward_probe({repeats})"
    probe = json.loads(run([sys.executable, "-c", code], project, env={**env, "PYTHONPATH": str(REPO)})
                       .stdout.strip().splitlines()[-1])
    return {"images": probe["images"], "seconds": spread(probe["seconds"]), "fastest_s": round(min(probe["seconds"]), 2)}


# ---------------------------------------------------------------- 4. the queued sweep

def grid_args(loop: Loop) -> list[str]:
    """One ``dvc exp run --queue``'s ``-S`` values for the whole grid: comma lists, and Hydra's ``choice`` for lists."""
    pooled = ",".join(override(layers) for layers in loop.sweep_pooled)
    return ["-S", "model.l2=" + ",".join(override(value) for value in loop.sweep_l2),
            "-S", f"model.pooled_layers=choice({pooled})"]


def finished_runs(project: Path, env: dict, since_ms: int) -> int:
    """MLflow runs of the project's store that started after ``since_ms`` and ended FINISHED."""
    import mlflow

    from painter_id.core.params import MlflowParams

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(MlflowParams().experiment)
    return len(client.search_runs([experiment.experiment_id], max_results=10000,
                                  filter_string=f"attributes.start_time >= {since_ms} and "
                                                "attributes.status = 'FINISHED'"))


def queued_sweep(project: Path, env: dict, loop: Loop, jobs: int, folder: Path) -> dict:
    """The grid queued by one command, then run by ``dvc queue start -j jobs`` until the queue is empty."""
    points = len(loop.sweep_l2) * len(loop.sweep_pooled)
    before = dvc(project, "queue", "status", env=env).stdout
    since_ms = int(time.time() * 1000)
    env = hooked(env, folder)
    start = time.perf_counter()
    dvc(project, "exp", "run", "--queue", *grid_args(loop), env=env)
    queued = time.perf_counter() - start
    # The queue workers inherit the command's output pipes, so `queue start` returns only once
    # the queue is empty: give it the sweep's time, not the helper's 15 minutes.
    run([sys.executable, "-m", "dvc", "queue", "start", "-j", str(jobs)], project, env=env, timeout=3600)
    status = wait_for_queue(project, env=env, timeout=3600)
    seconds = time.perf_counter() - start
    records = recorded(folder)
    per_stage = {stage: [r["ended"] - r["started"] for name, r in records.items() if name.endswith(f"-{stage}")]
                 for stage in ("features", "train", "evaluate")}
    return {"jobs": jobs, "points": points, "seconds": round(seconds, 1), "queueing_s": round(queued, 1),
            "per_point_s": round(seconds / points, 1),
            "succeeded": status.count("Success") - before.count("Success"),
            "failed": status.count("Failed") - before.count("Failed"),
            "mlflow_runs_finished": finished_runs(project, env, since_ms),
            # The others got the stage's outputs from DVC's run cache (train and evaluate: a point
            # the best command ran already); only a point that runs train records an MLflow run.
            "points_running": {stage: len(values) for stage, values in per_stage.items()},
            "stage_median_s": {stage: round(statistics.median(values), 1) for stage, values in per_stage.items()
                               if values}}


def sweeps(project: Path, env: dict, loop: Loop, work: Path) -> dict:
    """:func:`queued_sweep` once per ``loop.jobs``, each from the run cache the best command left."""
    run(["git", "checkout", "--", "."], project)  # back to the best command's commit: the head point is no baseline
    run_cache = project / ".dvc" / "cache" / "runs"
    saved = work / "run-cache-after-best"
    result = {"grid": {"model.l2": list(loop.sweep_l2), "model.pooled_layers": list(loop.sweep_pooled)},
              "command": "dvc exp run --queue " + " ".join(grid_args(loop))}
    for jobs in loop.jobs:
        shutil.rmtree(run_cache)
        shutil.copytree(saved, run_cache)
        result[f"j{jobs}"] = queued_sweep(project, env, loop, jobs, work / f"imports-j{jobs}")
        log.info("sweep, %d worker(s): %s", jobs, result[f"j{jobs}"])
    return result


# ---------------------------------------------------------------- 5. the floor

def import_floor(work: Path, imports: dict[str, list[str]], repeats: int) -> dict:
    """Seconds of ``dvc exp run`` for the eight stages doing nothing but their imports, and of each stage's imports."""
    repo = work / "floor"
    repo.mkdir()
    run(["git", "init", "-q", "-b", "main"], repo)
    dvc(repo, "init", "-q")
    (repo / "imports.json").write_text(json.dumps(imports), encoding="utf-8")
    (repo / "floor.py").write_text(FLOOR_SCRIPT, encoding="utf-8")
    stages, previous = {}, None
    for stage in STAGES:
        stages[stage] = {"cmd": f"python floor.py {stage}", "outs": [f"{stage}.done"],
                         **({"deps": [previous]} if previous else {})}
        previous = f"{stage}.done"
    (repo / "dvc.yaml").write_text(json.dumps({"stages": stages}, indent=2), encoding="utf-8")
    (repo / ".gitignore").write_text("*.done\n", encoding="utf-8")
    commit_all(repo, "floor")
    env = {"PYTHONPATH": str(REPO)}  # the stages' painter_id: the imports' own module-level work counts
    pipeline = []
    for _ in range(repeats):
        for leftover in [*repo.glob("*.done"), repo / "dvc.lock"]:
            leftover.unlink(missing_ok=True)
        shutil.rmtree(repo / ".dvc" / "cache" / "runs", ignore_errors=True)  # nothing restored: every stage runs
        pipeline.append(round(timed(lambda: dvc(repo, "exp", "run", env=env)), 1))
    alone = {stage: spread([timed(lambda: run([sys.executable, "floor.py", stage], repo, env=env))
                            for _ in range(repeats)]) for stage in STAGES}
    return {"heavy_imports": {stage: [name for name in HEAVY if name in names] for stage, names in imports.items()},
            "dvc_exp_run_s": spread(pipeline), "stage_imports_s": alone,
            "modules_imported": {stage: len(names) for stage, names in imports.items()}}


def save_imports(path: Path, entry: str, imports: dict[str, list[str]]) -> None:
    """Keep the modules each stage loaded under ``entry`` of ``path``, which ``--floor-only`` reads.

    Thousands of names a stage: kept out of results.json, which people read.
    """
    saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    path.write_text(json.dumps({**saved, entry: imports}) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- 7. the notebook recipe

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
    result = notebook_fit(artist_folders(project, "train", work / "nb-train"),
                          artist_folders(project, "test", work / "nb-test"), MOBILENET_WEIGHTS)
    return {key: value for key, value in result.items() if key not in ("y_true", "y_pred")}


def notebook_fit(train_dir: Path, test_dir: Path, weights: Path) -> dict:
    """Fit the seed notebooks' model on ``train_dir/<artist>/`` and score it on ``test_dir/<artist>/``.

    As the notebooks do it: ``image_dataset_from_directory`` at 224 px with 20% of the training
    paintings held out for early stopping, a frozen MobileNet (alpha 0.25) and a softmax on its
    average-pooled features, Adam at 1e-3.
    """
    import keras
    import numpy as np

    start = time.perf_counter()
    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        train_dir, validation_split=0.2, subset="both", seed=42, image_size=(224, 224), batch_size=32)
    test_ds = keras.utils.image_dataset_from_directory(test_dir, image_size=(224, 224), batch_size=32, shuffle=False,
                                                       class_names=train_ds.class_names)
    base = keras.applications.MobileNet(input_shape=(224, 224, 3), alpha=0.25, include_top=False,
                                        weights=str(weights))
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
            "n_test": int(len(y_true)), "y_true": y_true.tolist(), "y_pred": y_pred.tolist()}


# ---------------------------------------------------------------- main

def measure(work: Path, args: argparse.Namespace, loop: Loop) -> dict:
    """Steps 1-4 and 6 (and 7 with ``--notebook``) in one fresh workspace; the imports the floor needs come with them."""
    data = sample_data(work / "paintings", loop.artists, loop.per_artist)
    params = best_params(args.command, data)
    params["resize"] = {**params["resize"], "image_size": loop.image_size}
    project = make_project(work / "project")
    env = tracking_env(project)
    result: dict = {"paintings": describe(data, loop)}
    result["best_command"], imports = best_command(project, env, params, work)
    log.info("best command: %s", result["best_command"])
    commit_all(project, "best command")
    shutil.copytree(project / ".dvc" / "cache" / "runs", work / "run-cache-after-best")
    result["head_only"] = timed_command(project, ["exp", "run", "-S", f"model.l2={HEAD_ONLY_L2}"], env,
                                        work / "imports-head")
    log.info("head-only point: %s", result["head_only"])
    result["forward_pass"] = forward_pass(project, env, loop.repeats)
    log.info("the backbone's forward pass alone: %s", result["forward_pass"])
    result["mlflow_model"] = log_model_cost(project, env, loop.repeats)
    log.info("MLflow Model of one point: %s", result["mlflow_model"])
    if loop.jobs:
        result["sweep"] = sweeps(project, env, loop, work)
    if args.notebook:
        result["notebook"] = notebook_recipe(project, work)
        log.info("notebook recipe: %s", result["notebook"])
    return {**result, "imports": imports}


def least_possible(floor_s: float, forward_s: float, best_s: float) -> dict:
    """The least time the best command can take (the floor plus the forward pass alone) against 1.3x the floor."""
    bound = floor_s + forward_s
    return {"seconds": round(bound, 1), "target_s": round(1.3 * floor_s, 1),
            "target_reachable": bound <= 1.3 * floor_s, "best_to_least_possible": round(best_s / bound, 2)}


def describe(data: dict, loop: Loop) -> str:
    """Which paintings and weights the loop ran on, in words."""
    source = "synthetic paintings" if data["source"] == "synthetic" else f"{SAMPLE.name}"
    if loop.artists or loop.per_artist:
        source += f" ({loop.artists} painters x {loop.per_artist})"
    weights = "ImageNet weights file" if MOBILENET_WEIGHTS.exists() else "random weights"
    return f"{source}, {loop.image_size} px, MobileNet alpha 0.25 ({weights})"


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.experiment_loop", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 painters x 8 paintings at 64 px, a 2 x 2 sweep, one repeat (a few minutes)")
    parser.add_argument("--command", choices=("holdout", "cv"), default="holdout",
                        help="the best command on the 80/20 split (default) or cross-validated at two scales")
    parser.add_argument("--jobs", default="1,2", help="`dvc queue start -j` values, one sweep each ('' for none)")
    parser.add_argument("--notebook", action="store_true", help="also the seed notebooks' recipe (2-3 minutes)")
    parser.add_argument("--floor-only", action="store_true",
                        help="measure only the floor, from the imports of the last entry (about 2 minutes)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results.json to add the entry to")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    loop = replace(QUICK if args.quick else FULL, jobs=tuple(int(j) for j in args.jobs.split(",") if j.strip()))
    if not args.quick and not args.floor_only and not (SAMPLE.is_dir() and MOBILENET_WEIGHTS.exists()):
        sys.exit(f"needs {SAMPLE} and {MOBILENET_WEIGHTS} (--quick runs without them)")
    before, date = load_average(), utc_now()
    with tempfile.TemporaryDirectory(prefix="painter-loop-") as folder:
        work = Path(folder)
        imports_file = args.output.with_name(IMPORTS_FILE)
        if args.floor_only:
            result = dict(read_results(args.output).get(ENTRY[args.command]) or {})
            saved = json.loads(imports_file.read_text(encoding="utf-8")) if imports_file.is_file() else {}
            if not result or ENTRY[args.command] not in saved:
                sys.exit(f"{imports_file} has no {ENTRY[args.command]} imports of the stages: run the loop first")
            imports = saved[ENTRY[args.command]]
        else:
            result = {"date": date, "quick": args.quick, "machine": machine(), "versions": versions(),
                      "loop": {**asdict(loop), "command": args.command}, **measure(work, args, loop)}
            imports = result.pop("imports")
            save_imports(imports_file, ENTRY[args.command], imports)
        floor = {"date": utc_now(), **import_floor(work, imports, loop.repeats)}
        log.info("floor: %s", floor)
    with_history(result, "floor", {**floor, "load_average": load_average()})
    if "best_command" in result:
        best = result["best_command"]
        result["best_to_floor"] = round(best["seconds"] / floor["dvc_exp_run_s"]["median"], 2)
        best["beyond_imports_s"] = {stage: round(seconds - floor["stage_imports_s"][stage]["median"], 1)
                                    for stage, seconds in best["stage_s"].items()}
        if "forward_pass" in result:
            result["least_possible"] = least_possible(floor["dvc_exp_run_s"]["median"],
                                                      result["forward_pass"]["fastest_s"], best["seconds"])
    if args.floor_only:  # the entry stays the same run's, with a new floor
        results = read_results(args.output)
        results[ENTRY[args.command]] = result
        write_results(args.output, results)
    else:
        result["load_average"] = {"before": before, "after": load_average()}
        save_entry(args.output, ENTRY[args.command], result)
    print(json.dumps({key: value for key, value in result.items() if key != "previous"}, indent=2))
    return result


if __name__ == "__main__":
    main()
