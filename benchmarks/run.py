"""Measure the pipeline against plain baselines, side by side on one machine in one run.

1. resize throughput against a plain single-process PIL loop over the same images;
2. train-stage throughput from the pixels (the backbone trained) against ``model.fit`` on the
   same data as in-memory tensors, plus ``train.precision`` and ``train.jit_compile`` variants;
3. head sweep points (``dvc exp run``) that switch ``model.pooled_layers`` back to a set seen
   before, the ``features`` stage served by DVC's run cache vs recomputing the features;
4. wall time of the default end-to-end ``dvc repro`` and of a no-op ``dvc repro``;
5. peak memory (RSS) of the resize and train stages at 1x, 2x and 4x the data;
6. ``--help`` of every console command, each in a fresh process (``python -m <module> --help``).

Uses the real paintings in ``../shared/artworks-sample`` when present, else the synthetic
generator. Every figure is repeated (``--repeats``) and reported as median, min and max.
Adds each section it measured to ``benchmarks/results.json`` (the entry it replaces kept
under ``previous``, with its date) and prints a Markdown table. Not a test: nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import json
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import psutil
import yaml
from PIL import Image, ImageOps

from testkit.project import MOBILENET_WEIGHTS, SAMPLE, dvc, make_project, run, stage_main, write_params

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results.json"
SECTIONS = ("resize", "train", "sweep", "dvc", "memory", "help")

log = logging.getLogger("benchmarks")


@dataclass(frozen=True)
class Config:
    """Sizes of every benchmark; ``--quick`` shrinks them to a smoke run."""

    repeats: int = 3
    images: Optional[int] = None       # None: every sample image
    resize_size: int = 75              # the default resize.image_size
    resize_passes: int = 2             # the image list repeated, for enough work to time
    train_size: int = 96
    train_epochs: int = 2
    variant_repeats: int = 1           # runs of the precision / jit_compile variants (each costs a full training)
    sweep_size: int = 128
    sweep_points: int = 3              # `dvc exp run`s per sweep
    sweep_artists: Optional[int] = None  # the sweep's paintings: None, every sample painting
    sweep_per_artist: Optional[int] = None
    memory_size: int = 128
    memory_factors: tuple[int, ...] = (1, 2, 4)
    e2e: bool = True                   # the default end-to-end `dvc repro` (minutes)
    help_repeats: int = 5


FULL = Config()
QUICK = Config(repeats=1, images=24, resize_size=32, resize_passes=1, train_size=32, train_epochs=1, sweep_size=32,
               sweep_points=2, sweep_artists=3, sweep_per_artist=8, memory_size=32, memory_factors=(1, 2), e2e=False,
               help_repeats=1)
# Small enough for a no-op or smoke `dvc repro` in seconds.
TINY_PIPELINE = {"data": {"synthetic_artists": 3, "synthetic_images": 30}, "oversample": {"min_count": 8},
                 "resize": {"image_size": 32}, "model": {"backbone": "simple_cnn"}, "train": {"epochs": 1, "batch_size": 8}}


def spread(values: list[float]) -> dict:
    """Median, min, max and every run of a repeated measurement."""
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "runs": [round(v, 3) for v in values]}


def timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


@contextlib.contextmanager
def chdir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


# ---------------------------------------------------------------- inputs

def source_images(work: Path, cfg: Config) -> tuple[list[tuple[str, str]], str]:
    """``(path, artist)`` of the benchmark images and where they come from."""
    if (SAMPLE / "images").is_dir():
        root, origin = SAMPLE / "images", f"{SAMPLE.name} (real paintings, 224 px)"
    else:
        from painter_id.sources.synthetic import generate

        root = generate(work / "synthetic", n_artists=10, n_images=max(100, cfg.images or 400)) / "images" / "images"
        origin = "synthetic generator"
    files = sorted(p for p in root.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    pairs = [(str(p), p.parent.name.replace("_", " ")) for p in files]
    if cfg.images:
        pairs = pairs[:: max(1, len(pairs) // cfg.images)][: cfg.images]
    return pairs, origin


def write_table(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def resized_project(root: Path, pairs: list[tuple[str, str]], size: int) -> Path:
    """A project folder whose ``data/resized/train.{npy,csv}`` holds ``pairs`` at ``size`` px."""
    from painter_id.core.parallel import Workers
    from painter_id.core.params import ResizeParams
    from painter_id.data import resized
    from painter_id.data.images import sha256_file
    from painter_id.data.resized import resize_to_npy

    out = root / resized.RESIZED_DIR
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        resize_to_npy([(p, sha256_file(p)) for p, _ in pairs], resized.array_path(split, out), ResizeParams(image_size=size),
                      Workers(1), split)
        write_table(resized.table_path(split, out), resized.COLUMNS, [[p, a, "", sha256_file(p)] for p, a in pairs])
    resized.write_format(out, size, "pad")
    return root


def sample_data(dest: Path, artists: Optional[int] = None, per_artist: Optional[int] = None) -> dict:
    """``data`` params for the sample paintings, or for the first ``per_artist`` of its first ``artists`` painters.

    A subset is copied into ``dest`` in the Kaggle layout (the download stage follows no
    links). Without the sample, the synthetic generator makes about as many paintings.
    """
    from painter_id.data.images import is_image_name

    if not (SAMPLE / "images").is_dir():
        count = min(12, artists or 10)  # synthetic_artists is at most 12
        return {"source": "synthetic", "synthetic_artists": count,
                "synthetic_images": max(20, count * (per_artist or 40))}
    if artists is None and per_artist is None:
        return {"source": "path", "path": str(SAMPLE)}
    for folder in sorted(p for p in (SAMPLE / "images").iterdir() if p.is_dir())[:artists]:
        (dest / "images" / folder.name).mkdir(parents=True, exist_ok=True)
        for painting in sorted(p for p in folder.iterdir() if is_image_name(p))[:per_artist]:
            shutil.copyfile(painting, dest / "images" / folder.name / painting.name)
    return {"source": "path", "path": str(dest)}


def frozen_mobilenet() -> dict:
    """``model`` params of MobileNet alpha 0.25 frozen whole: the ImageNet weights file when there is one, else random."""
    weights = ({"weights": "file", "weights_file": str(MOBILENET_WEIGHTS)} if MOBILENET_WEIGHTS.exists()
               else {"weights": "random"})
    return {"backbone": "MobileNet", "alpha": 0.25, "frozen_layers": "all", **weights}


def tracking_env(project: Path) -> dict:
    """The environment that sends a project's MLflow runs to its own store."""
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}


RUNNING = re.compile(r"Running stage '([\w-]+)'")


def stages_run(output: str) -> list[str]:
    """The stages DVC ran, from what it printed: not those unchanged or restored from its run cache."""
    return RUNNING.findall(output)


def commit_all(project: Path, message: str) -> None:
    """Commit the project's workspace (params, ``dvc.lock``, metrics): the baseline experiments start from."""
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", message], project)


# ---------------------------------------------------------------- 1. resize

def plain_pil_loop(paths: list[str], size: int) -> np.ndarray:
    """The baseline: open, convert, pad, stack, one image after another in one process."""
    return np.stack([np.asarray(ImageOps.pad(Image.open(p).convert("RGB"), (size, size), Image.Resampling.BILINEAR))
                     for p in paths])


def bench_resize(work: Path, pairs: list[tuple[str, str]], cfg: Config) -> dict:
    from painter_id.core.parallel import Workers, open_workers, worker_count
    from painter_id.core.params import ResizeParams
    from painter_id.data.images import sha256_file
    from painter_id.data.resized import resize_to_npy

    paths = [(p, sha256_file(p)) for p, _ in pairs] * cfg.resize_passes
    params = ResizeParams(image_size=cfg.resize_size)
    workers = worker_count(len(paths))
    dest = work / "resize.npy"

    def stage() -> None:
        # As the stage runs: a fresh spawn pool, its start-up included in the time.
        with open_workers(workers) as pool:
            resize_to_npy(paths, dest, params, pool, "resize")

    times: dict[str, list[float]] = {"baseline": [], "stage": [], "stage_one_process": []}
    for _ in range(cfg.repeats):
        times["baseline"].append(timed(lambda: plain_pil_loop([p for p, _ in paths], cfg.resize_size)))
        times["stage"].append(timed(stage))
        times["stage_one_process"].append(timed(lambda: resize_to_npy(paths, dest, params, Workers(1), "resize")))
    rates = {name: spread([len(paths) / t for t in values]) for name, values in times.items()}
    return {"images": len(paths), "size": cfg.resize_size, "workers": workers, "images_per_s": rates,
            "speedup": round(rates["stage"]["median"] / rates["baseline"]["median"], 2),
            "target": ">= 1.7x the plain loop"}


# ---------------------------------------------------------------- 2. train throughput

TRAIN_MODEL = {"backbone": "MobileNet", "alpha": 0.25, "weights": "random", "frozen_layers": 0}


def train_rows(project: Path) -> tuple[int, int]:
    from painter_id.core.params import load_section
    from painter_id.data import resized

    with chdir(project):
        data = resized.load_split("train")
        train_idx, val_idx = resized.validation_split(data, load_section("train").validation_split, 42)
    return len(train_idx), len(val_idx)


def run_train_stage(project: Path, overrides: dict) -> dict:
    """Run the features and train stages in this process; metrics/train.json and the fit's ``seconds``.

    The fit's time is the run's MLflow metric ``train.seconds`` (train.json holds results only).
    """
    import keras
    import mlflow

    from painter_id.core.paths import TRAIN_METRICS
    from painter_id.model import model_files

    write_params(project, overrides)
    with chdir(project):
        try:
            stage_main("features", "train")
        finally:
            keras.mixed_precision.set_global_policy("float32")
        summary, record = json.loads(TRAIN_METRICS.read_text(encoding="utf-8")), model_files.read_run()
    metrics = mlflow.MlflowClient(record["tracking_uri"]).get_run(record["run_id"]).data.metrics
    return {**summary, "seconds": metrics["train.seconds"]}


def plain_fit(project: Path, overrides: dict) -> float:
    """The baseline: the same model and data, ``model.fit`` on tensors already in memory. Returns seconds."""
    import keras
    import tensorflow as tf

    from painter_id.core.params import load_all
    from painter_id.data import resized
    from painter_id.model import network, training
    from painter_id.model.registry import get_backbone

    write_params(project, overrides)
    with chdir(project):
        params = load_all()
        data = resized.load_split("train")
        labels = resized.class_names(data.artists)
        y = resized.encode(data.artists, labels, "train.csv")
        train_idx, val_idx = resized.validation_split(data, params.train.validation_split, params.train.seed)
        keras.utils.set_random_seed(params.train.seed)
        model, _, _ = network.build_model(get_backbone(params.model.backbone), data.size, len(labels),
                                        params.model, params.train)
        model.compile(optimizer=training.make_optimizer(params.train), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        x, xv = tf.constant(np.asarray(data.images[train_idx])), tf.constant(np.asarray(data.images[val_idx]))
        return timed(lambda: model.fit(x, tf.constant(y[train_idx]), batch_size=params.train.batch_size,
                                       epochs=params.train.epochs, validation_data=(xv, tf.constant(y[val_idx])),
                                       class_weight=training.class_weights(y[train_idx], len(labels), "balanced"),
                                       verbose=0))


def bench_train(work: Path, pairs: list[tuple[str, str]], cfg: Config) -> dict:
    project = resized_project(work / "train", pairs, cfg.train_size)
    # The MLflow Model is left out: logging it is no part of the fit this measures.
    base = {"model": TRAIN_MODEL, "train": {"epochs": cfg.train_epochs, "early_stopping_patience": 99},
            "mlflow": {"log_model": False}}
    variants = {
        "stage float32": {},
        "stage mixed_bfloat16": {"precision": "mixed_bfloat16"},
        "stage jit_compile": {"jit_compile": True},
    }
    write_params(project, base)
    n_train, _ = train_rows(project)
    images = n_train * cfg.train_epochs
    rates: dict[str, list[float]] = {"model.fit on tensors": [], **{name: [] for name in variants}}
    for repeat in range(cfg.repeats):
        rates["model.fit on tensors"].append(images / plain_fit(project, base))
        for name, extra in variants.items():
            if extra and repeat >= cfg.variant_repeats:
                continue
            summary = run_train_stage(project, {**base, "train": {**base["train"], **extra}})
            rates[name].append(n_train * summary["epochs_run"] / summary["seconds"])
    result = {name: spread(values) for name, values in rates.items()}
    return {"model": f"MobileNet alpha 0.25, {cfg.train_size} px, all layers trained, flip on",
            "rows": n_train, "epochs": cfg.train_epochs, "images_per_s": result,
            "ratio": round(result["stage float32"]["median"] / result["model.fit on tensors"]["median"], 2),
            "target": ">= 0.9x model.fit on in-memory tensors"}


# ---------------------------------------------------------------- 3. sweep

# The two feature configurations the sweep's points switch between (`-S` values).
SWEEP_POOLED = ("[conv_pw_11_relu]", "[]")


def bench_sweep(work: Path, cfg: Config) -> dict:
    """Head points (``dvc exp run -S model.l2=... -S model.pooled_layers=...``), each switching the pooled set.

    Both sets' features were computed before the sweep, so every point's ``features`` stage is
    either restored from DVC's run cache or, with the run cache emptied before the point,
    recomputed; ``model.l2`` is new at every point, so ``train`` and ``evaluate`` always run.
    Each point costs what a point of a real sweep costs: DVC, both stages' start-up, the MLflow
    run and its Model.
    """
    data = sample_data(work / "sweep-paintings", cfg.sweep_artists, cfg.sweep_per_artist)
    project = make_project(work / "sweep", {
        "data": data, "oversample": {"strategy": "none"}, "resize": {"image_size": cfg.sweep_size},
        "model": {**frozen_mobilenet(), "pooled_layers": yaml.safe_load(SWEEP_POOLED[0]), "dropout": 0.0},
        "train": {"flip": False, "validation_split": 0}})
    env = tracking_env(project)
    dvc(project, "repro", env=env)
    commit_all(project, "sweep baseline")
    dvc(project, "exp", "run", "-S", f"model.pooled_layers={SWEEP_POOLED[1]}", env=env)  # the other set, run-cached
    run_cache = project / ".dvc" / "cache" / "runs"
    penalties = (f"{0.001 * n:g}" for n in itertools.count(1))
    pooled = itertools.cycle(SWEEP_POOLED)  # the workspace holds SWEEP_POOLED[1]'s features: start with the other
    times: dict[str, list[float]] = {"run cache": [], "recomputed": []}
    features_ran = dict.fromkeys(times, 0)
    for _ in range(cfg.repeats):
        for variant, seconds in times.items():
            total = 0.0
            for _ in range(cfg.sweep_points):
                if variant == "recomputed":
                    shutil.rmtree(run_cache, ignore_errors=True)
                start = time.perf_counter()
                out = dvc(project, "exp", "run", "-S", f"model.l2={next(penalties)}",
                          "-S", f"model.pooled_layers={next(pooled)}", env=env).stdout
                total += time.perf_counter() - start
                features_ran[variant] += "features" in stages_run(out)
            seconds.append(total)
    result = {name: spread(values) for name, values in times.items()}
    weights = "ImageNet" if MOBILENET_WEIGHTS.exists() else "random"
    paintings = "synthetic" if data["source"] == "synthetic" else "sample"
    if cfg.sweep_artists or cfg.sweep_per_artist:
        paintings += f", {cfg.sweep_artists} painters x {cfg.sweep_per_artist}"
    return {"model": f"MobileNet alpha 0.25 ({weights} weights), {cfg.sweep_size} px, whole backbone frozen, "
                     f"head solved by L-BFGS ({paintings} paintings)",
            "points": cfg.sweep_points, "pooled_layers": list(SWEEP_POOLED), "seconds": result,
            "points_running_features": {name: f"{count} of {cfg.sweep_points * cfg.repeats}"
                                        for name, count in features_ran.items()},
            "ratio": round(result["run cache"]["median"] / result["recomputed"]["median"], 2),
            "target": "<= 0.4x the points recomputing the features"}


# ---------------------------------------------------------------- 4. dvc

def bench_dvc(work: Path, cfg: Config) -> dict:
    project = make_project(work / "dvc", None if cfg.e2e else TINY_PIPELINE)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    repro = [sys.executable, "-m", "dvc", "repro"]
    end_to_end = timed(lambda: run(repro, project, env=env))
    noop = [timed(lambda: run(repro, project, env=env)) for _ in range(cfg.repeats)]
    return {"pipeline": "default params.yaml" if cfg.e2e else "tiny params (smoke run)",
            "end_to_end_s": spread([end_to_end]), "noop_s": spread(noop), "target": "no-op < 5 s"}


# ---------------------------------------------------------------- 5. memory

def peak_rss(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """Run ``cmd``; return its peak RSS and the peak RSS of it and its children together, in MiB."""
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    main, total = 0, 0
    handle = psutil.Process(proc.pid)
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            own = handle.memory_info().rss
            children = sum(c.memory_info().rss for c in handle.children(recursive=True))
            main, total = max(main, own), max(total, own + children)
        time.sleep(0.05)
    stderr = proc.stderr.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{stderr[-2000:]}")
    return round(main / 2**20, 1), round(total / 2**20, 1)


def bench_memory(work: Path, pairs: list[tuple[str, str]], cfg: Config) -> dict:
    from painter_id.data import oversampling, splitting
    from painter_id.data.images import sha256_file

    env = {"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    rows = []
    listed = [(path, artist, sha256_file(path)) for path, artist in pairs]  # resize checks every image against it
    for factor in cfg.memory_factors:
        project = work / f"memory{factor}"
        write_table(project / "data" / "oversampled" / "train.csv", oversampling.COLUMNS,
                    [[p, a, digest, ""] for p, a, digest in listed * factor])
        write_table(project / "data" / "split" / "test.csv", splitting.COLUMNS, [list(row) for row in listed[:20]])
        write_params(project, {"resize": {"image_size": cfg.memory_size},
                               "model": TRAIN_MODEL, "train": {"epochs": 1},
                               "mlflow": {"tracking_uri": "sqlite:///mlflow.db"}})
        resize_main, resize_total = peak_rss([sys.executable, "-m", "stages.resize"], project, env)
        # The backbone trains, so features only writes that it is not used (no TensorFlow): not measured.
        run([sys.executable, "-m", "stages.features"], project, env=env)
        train_main, _ = peak_rss([sys.executable, "-m", "stages.train"], project, env)
        array_mib = round((project / "data" / "resized" / "train.npy").stat().st_size / 2**20, 1)
        rows.append({"factor": factor, "images": len(pairs) * factor, "train_npy_mib": array_mib,
                     "resize_main_mib": resize_main, "resize_with_workers_mib": resize_total,
                     "train_mib": train_main})
    return {"size": cfg.memory_size, "runs": rows,
            "target": "resize flat across 1x/2x/4x (train holds the arrays in memory up to 1 GiB)"}


# ---------------------------------------------------------------- 6. help

def console_commands() -> dict[str, str]:
    """Every console command pyproject.toml declares, and the module it runs."""
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    return {name: target.split(":")[0] for name, target in sorted(scripts.items())}


def bench_help(cfg: Config) -> dict:
    """Seconds of ``python -m <module> --help``, a fresh process each time: interpreter start-up included."""
    seconds = {name: spread([timed(lambda: run([sys.executable, "-m", module, "--help"], REPO))
                             for _ in range(cfg.help_repeats)])
               for name, module in console_commands().items()}
    return {"seconds": seconds, "target": "under 1 s each"}


# ---------------------------------------------------------------- report

def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor()) \
        if Path("/proc/cpuinfo").exists() else platform.processor()
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "gpus": 0 if not shutil.which("nvidia-smi") else "see nvidia-smi", "os": platform.platform()}


def versions() -> dict:
    from importlib.metadata import version

    return {"python": platform.python_version(),
            **{name: version(name) for name in ("tensorflow", "keras", "numpy", "pillow", "dvc", "mlflow")}}


def utc_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: the machine may be shared, and its other work slows every figure."""
    return [round(value, 1) for value in os.getloadavg()]


def with_history(results: dict, key: str, entry: dict) -> None:
    """Put ``entry`` under ``key`` in ``results``; the entry it replaces stays as its ``previous``, for history.

    A smoke run (``quick``) or a skipped section is no history: what it replaced is kept instead.
    """
    old = results.get(key)
    if isinstance(old, dict) and (old.get("skipped") or old.get("quick")):
        old = old.get("previous")
    results[key] = {**entry, "previous": old} if old else entry


def read_results(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def write_results(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def save_entry(path: Path, key: str, entry: dict) -> None:
    """Add ``entry`` to the results file ``path`` under ``key`` (:func:`with_history`); the other entries stay."""
    results = read_results(path)
    with_history(results, key, entry)
    write_results(path, results)


def measured(bench: Callable[[], dict], quick: bool) -> dict:
    """``bench()``'s figures with when they were taken, whether by a smoke run, and the load around them."""
    before, date = load_average(), utc_now()
    figures = bench()
    return {"date": date, "quick": quick, **figures, "load_average": {"before": before, "after": load_average()}}


def fmt(stat: dict, unit: str = "") -> str:
    return f"{stat['median']:g}{unit} ({stat['min']:g}-{stat['max']:g})"


def table(results: dict) -> str:
    """The README table: one line per figure, median (min-max) over the repeats."""
    lines = ["| benchmark | pipeline | baseline | result | target |", "|---|---|---|---|---|"]
    if "resize" in results:
        r = results["resize"]
        rates = r["images_per_s"]
        lines.append(f"| resize, {r['images']} images to {r['size']} px, img/s | {fmt(rates['stage'])} "
                     f"({r['workers']} processes; 1 process: {fmt(rates['stage_one_process'])}) | "
                     f"{fmt(rates['baseline'])} (plain PIL loop) | {r['speedup']}x | {r['target']} |")
    if "train" in results:
        t = results["train"]
        rates = t["images_per_s"]
        variants = "; ".join(f"{name.removeprefix('stage ')}: {fmt(rates[name])}" for name in rates
                             if name.startswith("stage ") and name != "stage float32")
        lines.append(f"| train stage, {t['model']}, img/s | {fmt(rates['stage float32'])} ({variants}) | "
                     f"{fmt(rates['model.fit on tensors'])} (model.fit on tensors) | {t['ratio']}x | {t['target']} |")
    if "sweep" in results:
        s = results["sweep"]
        lines.append(f"| {s['points']}-point head sweep (`dvc exp run`, `model.pooled_layers` switched each point), "
                     f"{s['model']}, s | {fmt(s['seconds']['run cache'])} (features from DVC's run cache) | "
                     f"{fmt(s['seconds']['recomputed'])} (features recomputed) | {s['ratio']}x | {s['target']} |")
    if "dvc" in results:
        d = results["dvc"]
        lines.append(f"| no-op `dvc repro`, s | {fmt(d['noop_s'])} | - | - | {d['target']} |")
        lines.append(f"| end-to-end `dvc repro` ({d['pipeline']}), s | {fmt(d['end_to_end_s'])} | - | - | - |")
    if "memory" in results:
        m = results["memory"]
        for row in m["runs"]:
            lines.append(f"| peak RSS at {row['factor']}x ({row['images']} images, {row['train_npy_mib']} MiB array, "
                         f"{m['size']} px), MiB | resize {row['resize_main_mib']} (with workers "
                         f"{row['resize_with_workers_mib']}); train {row['train_mib']} | - | - | "
                         f"{m['target'] if row['factor'] == 1 else ''} |")
    if "help" in results:
        h = results["help"]
        times = "; ".join(f"{name} {fmt(stat)}" for name, stat in h["seconds"].items())
        lines.append(f"| `--help` of the console commands (`python -m <module> --help`), s | {times} | - | - | "
                     f"{h['target']} |")
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one iteration on tiny inputs (smoke run)")
    parser.add_argument("--repeats", type=int, help="repetitions of every figure (default 3, --quick 1)")
    parser.add_argument("--images", type=int, help="use only this many source images")
    parser.add_argument("--skip", default="", help=f"comma-separated sections to leave out: {', '.join(SECTIONS)}")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write results.json")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cfg = QUICK if args.quick else FULL
    cfg = replace(cfg, repeats=args.repeats or cfg.repeats, images=args.images or cfg.images)
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    unknown = skip - set(SECTIONS)
    if unknown:
        raise SystemExit(f"--skip: unknown section(s) {', '.join(sorted(unknown))}; use {', '.join(SECTIONS)}")

    results = read_results(args.output)
    results.update({"quick": args.quick, "config": asdict(cfg), "machine": machine(), "versions": versions()})
    this_run = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="painter-bench-") as tmp:
        work = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
        pairs, origin = source_images(work, cfg)
        results["images"] = {"source": origin, "count": len(pairs)}
        benches = {"resize": lambda: bench_resize(work, pairs, cfg), "train": lambda: bench_train(work, pairs, cfg),
                   "sweep": lambda: bench_sweep(work, cfg), "dvc": lambda: bench_dvc(work, cfg),
                   "memory": lambda: bench_memory(work, pairs, cfg), "help": lambda: bench_help(cfg)}
        for name, bench in benches.items():
            if name in skip:
                results.setdefault(name, {"skipped": True})  # an earlier run's figures stay
                continue
            log.info("benchmark %s ...", name)
            section_start = time.perf_counter()
            this_run[name] = measured(bench, args.quick)
            with_history(results, name, this_run[name])
            log.info("benchmark %s done in %.0f s", name, time.perf_counter() - section_start)
    results["total_s"] = round(time.perf_counter() - started, 1)
    results["table"] = table(this_run)
    write_results(args.output, results)
    print(results["table"])
    return results


if __name__ == "__main__":
    main()
