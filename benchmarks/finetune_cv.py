"""Does fine-tuning the top of the backbone beat the frozen best? Repeated stratified CV on the sample paintings.

Research benchmark. The 431 paintings of ``../shared/artworks-sample`` are brought to 448 px
(``pad``, :func:`painter_id.data.images.load_square`, as the resize stage does) and cut into
the folds of :func:`painter_id.model.crossval.fold_rows`, one 5-fold cut per seed of
``--seeds`` (the first, 42, is the pipeline's own ``train.seed``): every configuration is
scored on the very same folds, so differences are paired.

* ``frozen_best``: the frozen configuration of the README's best command (MobileNet 0.25,
  pooled blocks 5, 11, 12 and the last one, scales 1.0 and 1.5, ``model.l2`` 0.003), the head
  solved by L-BFGS on every training row of the fold, as the train stage solves it.
* the cheaper ensembles on the frozen best's features: ``frozen_best_tta_flip`` and
  ``frozen_best_tta_flip_crops`` (``evaluate.tta``'s views averaged: the mirror image, the
  centre zoom and its mirror) and ``frozen_best_fold_ensemble`` (5 heads, each solved on 4/5 of
  the fold's training rows, averaged).
* ``head_first_only``: the same head solved on the fold's training rows less the 15% held out
  for early stopping: where every fine-tuned variant starts (its cost of holding rows out).
* fine-tuned variants (``VARIANTS``): ``model.frozen_layers`` 80 (the last depthwise block
  trains) with Adam or SGD at several rates for the head and ``train.backbone_learning_rate_scale``
  for the backbone; ``--follow NAME`` then runs NAME with the last two blocks (73), batch norm
  trainable, and no flips (``FOLLOW_UPS``). Head first, then Keras epochs (at most 15) with early
  stopping on the 15% held out; the ``..._all_rows`` variants instead train on every training
  row for the epochs the early-stopped folds chose, holding nothing out.

Fine-tuning at 448 and 672 px is too slow on 2 cores to repeat from the pixels, so what does not
change is computed once: with the first ``frozen_layers`` layers frozen (and their batch
normalisation in inference mode) their output for a painting is the same in every epoch, so
the benchmark caches it for each painting and its mirror image (``.cache/finetune_cv/``,
about 1.7 GB) and trains the very layers of the network the library builds
(:func:`painter_id.model.training.prepare_fit`: its optimizer, learning-rate scale, batch-norm
policy, head-first solve and callbacks) on top of it. A random flip per painting and epoch
picks the mirror image's cache, as ``train.flip`` would. The first fold of each variant is
checked against the library model run on the pixels (``pixel_check``: largest difference of
the probabilities; ``start_check``: the network before its first epoch against the solved
head). Crops and scale jitter (``train.crop_fraction``, ``train.zoom_fraction``) change the
pixels every epoch and cannot be cached: ``PIXEL_VARIANTS`` train the library's network from
the pixels (minutes a fit), only when named with ``--only``. Run::

    python -m benchmarks.finetune_cv [--seeds 42,43] [--only top1_adam1e-4_s1] [--follow top1_adam1e-4_s1]

It writes ``benchmarks/finetune_cv.json`` and prints a Markdown table: accuracy mean and
standard error over the folds, the paired difference to ``frozen_best`` and its standard
error, seconds per fit. Not a test: nothing here asserts a score.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "artworks-sample"
WEIGHTS = REPO.parent / "shared" / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
CACHE = REPO / ".cache" / "finetune_cv"
RESULTS = REPO / "benchmarks" / "finetune_cv.json"
SIZE = 448
FOLDS = 5
POOLED = ("conv_pw_5_relu", "conv_pw_11_relu", "conv_pw_12_relu")
# The output of the layer before each cut: what the frozen layers hand to those that train.
CUT_INPUT = {80: "conv_pw_12_relu", 73: "conv_pw_11_relu"}
# The README's best command, frozen; the variants change only what they name.
FROZEN_BEST = {
    "resize": {"image_size": SIZE},
    "model": {"backbone": "MobileNet", "alpha": 0.25, "weights": "file", "weights_file": str(WEIGHTS),
              "frozen_layers": "all", "pooled_layers": list(POOLED), "scales": [1.0, 1.5], "dropout": 0.0,
              "l2": 0.003},
    "train": {"flip": False, "validation_split": 0.0, "cv_folds": FOLDS},
}
FINE_TUNE = {"train.validation_split": 0.15, "train.flip": True, "train.epochs": 15,
             "train.learning_rate": 0.001, "model.batch_norm": "frozen"}
VARIANTS = {
    # (what, changes); every variant: head first, flips, BN frozen, early stopping unless it says otherwise.
    "top1_adam1e-3_s0.1": ("last block, Adam: head 1e-3, backbone 1e-4",
                           {"model.frozen_layers": 80, "train.backbone_learning_rate_scale": 0.1}),
    "top1_adam1e-4_s1": ("last block, Adam: head and backbone 1e-4",
                         {"model.frozen_layers": 80, "train.learning_rate": 1e-4,
                          "train.backbone_learning_rate_scale": 1.0}),
    "top1_adam1e-4_s0.1": ("last block, Adam: head 1e-4, backbone 1e-5",
                           {"model.frozen_layers": 80, "train.learning_rate": 1e-4,
                            "train.backbone_learning_rate_scale": 0.1}),
    "top1_adam1e-5_s1": ("last block, Adam: head and backbone 1e-5 (Keras' fine-tuning guide)",
                         {"model.frozen_layers": 80, "train.learning_rate": 1e-5,
                          "train.backbone_learning_rate_scale": 1.0}),
    "top1_sgd1e-2_s1": ("last block, SGD (momentum 0.9): head and backbone 1e-2",
                        {"model.frozen_layers": 80, "train.optimizer": "sgd", "train.learning_rate": 1e-2,
                         "train.backbone_learning_rate_scale": 1.0}),
    "top1_sgd1e-2_s0.1": ("last block, SGD (momentum 0.9): head 1e-2, backbone 1e-3",
                          {"model.frozen_layers": 80, "train.optimizer": "sgd", "train.learning_rate": 1e-2,
                           "train.backbone_learning_rate_scale": 0.1}),
    # Early stopping costs the 15% it holds out: the same fits on every training row, for the epochs
    # the early-stopped folds chose (median best epoch: 5 at 1e-3, 2 at 1e-4).
    "top1_adam1e-3_s0.1_all_rows": ("last block, Adam: head 1e-3, backbone 1e-4; every row, 5 epochs",
                                    {"model.frozen_layers": 80, "train.backbone_learning_rate_scale": 0.1,
                                     "train.validation_split": 0.0, "train.epochs": 5}),
    "top1_adam1e-4_s0.1_all_rows": ("last block, Adam: head 1e-4, backbone 1e-5; every row, 2 epochs",
                                    {"model.frozen_layers": 80, "train.learning_rate": 1e-4,
                                     "train.backbone_learning_rate_scale": 0.1, "train.validation_split": 0.0,
                                     "train.epochs": 2}),
}
# Crops and scale jitter change the pixels every epoch, so nothing can be cached: these train the
# library's network from the pixels, as the train stage's cross-validation does (slow: minutes a fit).
PIXEL_VARIANTS = {
    "top1_adam1e-3_s0.1_crops": ("last block, Adam: head 1e-3, backbone 1e-4; random crops (up to 20% "
                                 "smaller) and zoom (10%) beside flips, from the pixels",
                                 {"model.frozen_layers": 80, "train.backbone_learning_rate_scale": 0.1,
                                  "train.crop_fraction": 0.2, "train.zoom_fraction": 0.1}),
}
# Follow-ups: the best of the above with one thing changed (filled in by --follow BEST).
FOLLOW_UPS = {
    "top2": ("the last two blocks train", {"model.frozen_layers": 73}),
    "bn": ("batch norm trainable", {"model.batch_norm": "trainable"}),
    "noflip": ("no flips", {"train.flip": False}),
}

log = logging.getLogger("benchmarks.finetune_cv")


def make_params(changes: dict):
    """The frozen best's params with ``changes`` (``{"train.flip": True}``), validated as params.yaml would be."""
    from painter_id.core.params import SECTIONS, Params, parse_section

    raw = json.loads(json.dumps(FROZEN_BEST))
    for key, value in changes.items():
        section, name = key.split(".")
        raw.setdefault(section, {})[name] = value
    return Params(**{name: parse_section(name, raw.get(name)) for name in SECTIONS})


def sample():
    """The sample paintings as a :class:`painter_id.data.resized.Split` at ``SIZE`` px, labels and artist names."""
    from painter_id.data.images import load_square
    from painter_id.data.resized import Split

    with open(SAMPLE / "manifest.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    paths = [f"{row['artist']}/{row['file']}" for row in rows]
    cached = CACHE / f"pixels_{SIZE}.npy"
    if cached.is_file():
        images = np.load(cached)
    else:
        images = np.stack([load_square(SAMPLE / "images" / p, SIZE, "pad") for p in paths])
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(cached, images)
    artists = [row["artist"] for row in rows]
    names = sorted(set(artists))
    return Split(images, paths, artists, [""] * len(rows)), np.array([names.index(a) for a in artists]), names


def frozen_features(images: np.ndarray, n_classes: int, view: str = "plain") -> np.ndarray:
    """The frozen best's ``pool`` features of every painting's ``view``, computed by the library's extractor.

    ``view``: ``plain``, ``flip`` (the mirror image), ``zoom`` (the centre zoom of
    ``evaluate.tta: flip_crops``) or ``zoom_flip``.
    """
    import keras

    from painter_id.model import features, tta
    from painter_id.model.training import prepare_fit

    path = CACHE / f"frozen{'' if view == 'plain' else '_' + view}.npy"
    if path.is_file():
        return np.load(path)
    params = make_params({})
    net = prepare_fit(params, SIZE, n_classes)
    extractor = features.extractor_model(net.model)
    source = tta.centre_zoom(images) if view.startswith("zoom") else images
    if view.endswith("flip"):
        source = features.mirrored(source)
    x = features.compute(features.forward(extractor), source, params.runtime.predict_batch_size,
                         int(extractor.output_shape[-1]))
    keras.backend.clear_session()
    np.save(path, x)
    return x


def trunk_maps(images: np.ndarray, n_classes: int, flipped: bool) -> dict[str, list[np.ndarray]]:
    """Per scale, what the frozen layers output: the maps entering each cut of ``CUT_INPUT``, and block 5 pooled.

    Computed with the frozen best's backbone (every layer, batch normalisation included, in
    inference mode, as they run in a fine-tuning with ``model.batch_norm: frozen``).
    """
    import keras

    from painter_id.model import style
    from painter_id.model.backbones import Preprocess
    from painter_id.model.training import prepare_fit

    names = sorted(set(CUT_INPUT.values())) + ["conv_pw_5_relu"]
    paths = {name: CACHE / f"trunk_{name}{'_flip' if flipped else ''}.npz" for name in names}
    if all(p.is_file() for p in paths.values()):
        return {name: list(np.load(p).values()) for name, p in paths.items()}
    params = make_params({})
    net = prepare_fit(params, SIZE, n_classes)
    backbone = net.backbone
    inner = keras.Model(backbone.inputs, [backbone.get_layer(n).output for n in names])
    pixels = keras.Input((SIZE, SIZE, 3))
    x = Preprocess(net.entry.preprocess)(pixels)
    outputs = []
    for view in style.scaled_views(x, SIZE, params.model.scales, net.entry.min_size):
        maps = inner(view, training=False)
        outputs += list(maps[:-1]) + [keras.ops.mean(maps[-1], axis=(1, 2))]
    model = keras.Model(pixels, outputs)
    source = images[:, :, ::-1] if flipped else images
    parts = [model.predict_on_batch(np.asarray(source[i:i + 16])) for i in range(0, len(source), 16)]
    keras.backend.clear_session()
    stacked = [np.concatenate([p[k] for p in parts]).astype(np.float32) for k in range(len(outputs))]
    out = {name: stacked[k::len(names)] for k, name in enumerate(names)}
    for name, path in paths.items():
        np.savez(path, *out[name])
    return out


def cached_model(net, cut: int, scales: int):
    """The library network's layers from ``cut`` on, taking the cached trunk outputs: same layers, same weights.

    Inputs per scale ``k``: ``map_k`` (the output of the layer before the cut) and ``const_k_i``
    for every pooled layer before the cut (its average-pooled map); the head's input is laid out
    as the library's ``pool`` layer lays it out (per scale: the last map, then ``POOLED``).
    """
    import keras

    backbone = net.backbone
    top_names = [layer.name for layer in backbone.layers[cut:]]
    inputs, parts = {}, []
    for k in range(scales):
        shape = backbone.get_layer(CUT_INPUT[cut]).output.shape[1:]
        x = inputs[f"map_{k}"] = keras.Input((None, None, shape[-1]), name=f"map_{k}")
        seen = {}
        for layer in backbone.layers[cut:]:
            x = layer(x)
            seen[layer.name] = x
        pooled = [keras.layers.GlobalAveragePooling2D()(x)]
        for i, name in enumerate(POOLED):
            if name in top_names:
                pooled.append(keras.layers.GlobalAveragePooling2D()(seen[name]))
            else:
                width = backbone.get_layer(name).output.shape[-1]
                pooled.append(inputs.setdefault(f"const_{k}_{i}", keras.Input((width,), name=f"const_{k}_{i}")))
        parts += pooled
    x = keras.layers.Concatenate()(parts)
    x = net.model.get_layer("dropout")(x)
    return keras.Model(inputs, net.model.get_layer("artist")(x))


def cached_inputs(trunk: dict, cut: int, scales: int, top: set[str]) -> dict[str, np.ndarray]:
    """The arrays :func:`cached_model` takes, for every painting; ``top``: the names of the layers that train."""
    out = {}
    for k in range(scales):
        out[f"map_{k}"] = trunk[CUT_INPUT[cut]][k]
        for i, name in enumerate(POOLED):
            if name in top:
                continue
            cached = trunk[name][k]
            out[f"const_{k}_{i}"] = cached if cached.ndim == 2 else cached.mean(axis=(1, 2))
    return out


def batches(inputs: dict, mirrored: dict, y: np.ndarray, rows: np.ndarray, weights, batch_size: int, seed: int,
            flip: bool):
    """Shuffled batches of the cached inputs of ``rows``, each painting's mirror image drawn with probability 1/2."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.on_epoch_end()

        def __len__(self):
            return math.ceil(len(rows) / batch_size)

        def on_epoch_end(self):
            self.order = self.rng.permutation(rows)
            self.flips = self.rng.random(len(rows)) < 0.5 if flip else np.zeros(len(rows), bool)

        def __getitem__(self, index):
            part = slice(index * batch_size, (index + 1) * batch_size)
            chosen, flips = self.order[part], self.flips[part]
            x = {}
            for name, array in inputs.items():
                picked = array[chosen]
                if flips.any():
                    picked = picked.copy()
                    picked[flips] = mirrored[name][chosen[flips]]
                x[name] = picked
            w = np.ones(len(chosen)) if weights is None else weights[np.searchsorted(rows, chosen)]
            return x, y[chosen], w

    return Batches()


def fine_tune_fold(changes: dict, data, y: np.ndarray, n_classes: int, fold: tuple, frozen: np.ndarray,
                   trunk: tuple[dict, dict], check_pixels: bool) -> dict:
    """One fold of a fine-tuned variant: head first on the fold's training rows, then epochs; the scores and more."""
    import keras

    from painter_id.evaluation.scores import score
    from painter_id.model import crossval, head_fit, training
    from painter_id.model.balance import row_weights

    params = make_params({**FINE_TUNE, **changes})
    cut = params.model.frozen_layers
    train_rows, scored = fold
    fit_rows, val_rows = crossval.fold_split(data, train_rows, params.train)
    fit_rows, val_rows = np.sort(fit_rows), np.sort(val_rows)
    start = time.perf_counter()
    net = training.prepare_fit(params, SIZE, n_classes)
    scales = len(params.model.scales)
    model = cached_model(net, cut, scales)
    training.set_solved_head(net.model, frozen[fit_rows], y[fit_rows], params)
    head_only = head_fit.predict(*net.model.get_layer("artist").get_weights(), frozen[scored])
    model.compile(optimizer=net.model.optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    top = {layer.name for layer in net.backbone.layers[cut:]}
    inputs, mirrored = (cached_inputs(t, cut, scales, top) for t in trunk)
    # Before any epoch the network is the solved head on the frozen features: the same probabilities.
    start_check = float(np.abs(model.predict({n: a[scored] for n, a in inputs.items()}, verbose=0) - head_only).max())
    weights = row_weights(y[fit_rows], n_classes, params.train.class_weight)
    train_ds = batches(inputs, mirrored, y, fit_rows, weights, params.train.batch_size, params.train.seed,
                       params.train.flip)
    # As the library does: without held-out rows (train.validation_split 0) the callbacks watch the training loss.
    val = ({name: a[val_rows] for name, a in inputs.items()}, y[val_rows]) if len(val_rows) else None
    epoch_log = training.EpochLog()
    model.fit(train_ds, validation_data=val, epochs=params.train.epochs, verbose=0,
              callbacks=training.fit_callbacks(params.train, "val_loss" if val else "loss", epoch_log)[:-1])
    probs = model.predict({name: a[scored] for name, a in inputs.items()}, verbose=0)
    seconds = time.perf_counter() - start
    out = {"scores": score(y[scored], probs), "head_first_scores": score(y[scored], head_only),
           "epochs_run": len(epoch_log.rows), "seconds": seconds, "start_check": start_check,
           "history": epoch_log.rows}
    if check_pixels:  # the library model on the pixels, with the weights just trained: the same probabilities?
        pixel_probs = training.predict_rows(net.model, data.images, scored, 16)
        out["pixel_check"] = float(np.abs(pixel_probs - probs).max())
    keras.backend.clear_session()
    return out


def pixel_fold(changes: dict, data, y: np.ndarray, n_classes: int, fold: tuple) -> dict:
    """One fold of a variant trained from the pixels by the library (:func:`painter_id.model.training.train_network`)."""
    import keras

    from painter_id.evaluation.scores import score
    from painter_id.model import crossval, training

    params = make_params({**FINE_TUNE, **changes})
    train_rows, scored = fold
    start = time.perf_counter()
    epoch_log = training.EpochLog()
    net, _ = training.train_network(params, data.images, y, crossval.fold_split(data, train_rows, params.train),
                                    n_classes, epoch_log)
    probs = training.predict_rows(net.model, data.images, scored, 16)
    keras.backend.clear_session()
    return {"scores": score(y[scored], probs), "epochs_run": len(epoch_log.rows),
            "seconds": time.perf_counter() - start, "history": epoch_log.rows}


def frozen_fold(x: np.ndarray, y: np.ndarray, n_classes: int, rows: np.ndarray, scored: np.ndarray,
                views: tuple = (), inner_folds: int = 0) -> dict:
    """The frozen best's head on ``rows``, scored on ``scored``.

    ``views``: more feature arrays of the same paintings (mirror, zoom) whose probabilities are
    averaged in, as ``evaluate.tta`` averages them. ``inner_folds``: instead of one head on every
    row, the average of that many heads, each solved on all but one stratified part of ``rows``
    (an ensemble of the cross-validation's fold models).
    """
    from sklearn.model_selection import StratifiedKFold

    from painter_id.evaluation.scores import score
    from painter_id.model import head_fit

    params = make_params({})
    start = time.perf_counter()
    parts = [rows]
    if inner_folds:
        cut = StratifiedKFold(inner_folds, shuffle=True, random_state=params.train.seed)
        parts = [rows[kept] for kept, _ in cut.split(rows, y[rows])]
    probs = 0
    for part in parts:
        solution, _ = head_fit.fit_head(x, y, (part, part[:0]), n_classes, params.model.l2, params.train.class_weight)
        probs = probs + sum(head_fit.predict(solution.kernel, solution.bias, v[scored]) for v in (x, *views))
    probs = probs / (len(parts) * (1 + len(views)))
    return {"scores": score(y[scored], probs), "seconds": time.perf_counter() - start}


def paired(scores: list[float], baseline: list[float]) -> dict:
    """Mean and standard error over the folds, and of the paired difference to ``baseline``.

    The standard error treats the folds as independent; folds of one repeat share training
    rows, so it is somewhat optimistic, the same for every row of the table.
    """
    a, b = np.array(scores), np.array(baseline)
    n = len(a)
    sem = lambda v: float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0  # noqa: E731
    return {"mean": float(a.mean()), "sem": sem(a), "diff": float((a - b).mean()), "diff_sem": sem(a - b), "n": n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="42,43", help="one 5-fold cut per seed (default 42,43)")
    parser.add_argument("--only", default="", help="comma-separated variants (default: every cached one; "
                        "those trained from the pixels only when named)")
    parser.add_argument("--follow", default="", help="a variant: also run it with each change of FOLLOW_UPS")
    parser.add_argument("--smoke", action="store_true", help="96 px, 2 epochs, first fold only, into .cache: a "
                        "check that it runs, no figure")
    args = parser.parse_args()
    global SIZE, CACHE, RESULTS
    if args.smoke:
        SIZE, CACHE = 96, CACHE / "smoke"
        RESULTS = CACHE / "finetune_cv.json"
        FROZEN_BEST["resize"]["image_size"] = SIZE
        FINE_TUNE["train.epochs"] = 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not SAMPLE.is_dir() or not WEIGHTS.is_file():
        raise SystemExit(f"needs {SAMPLE} and {WEIGHTS}")
    from painter_id.model import crossval

    CACHE.mkdir(parents=True, exist_ok=True)
    data, y, names = sample()
    n_classes = len(names)
    seeds = [int(s) for s in args.seeds.split(",")]
    folds = [fold for seed in seeds for fold in crossval.fold_rows(data, FOLDS, seed)][:1 if args.smoke else None]
    start = time.perf_counter()
    frozen, flip, zoom, zoom_flip = (frozen_features(data.images, n_classes, view)
                                     for view in ("plain", "flip", "zoom", "zoom_flip"))
    trunk = (trunk_maps(data.images, n_classes, False), trunk_maps(data.images, n_classes, True))
    log.info("features and trunk maps ready in %.0f s", time.perf_counter() - start)

    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    runs = previous.get("runs", {}) if previous.get("seeds") == seeds else {}
    # The cheaper ensembles, each on the frozen best's features: kept only where the folds show a gain.
    frozen_rows = {
        "frozen_best": ("frozen best: head by L-BFGS on every training row", {}),
        "frozen_best_tta_flip": ("frozen best, scored on each painting and its mirror image averaged",
                                 {"views": (flip,)}),
        "frozen_best_tta_flip_crops": ("frozen best, scored on the painting, its centre zoom and their mirror "
                                       "images averaged (evaluate.tta: flip_crops)", {"views": (flip, zoom, zoom_flip)}),
        "frozen_best_fold_ensemble": ("frozen best, the average of 5 heads each solved on 4/5 of the fold's "
                                      "training rows (the cross-validation's fold models)", {"inner_folds": 5}),
    }
    for name, (what, how) in frozen_rows.items():
        runs[name] = {"what": what, "folds": [frozen_fold(frozen, y, n_classes, tr, sc, **how) for tr, sc in folds]}
    variants = {**VARIANTS, **PIXEL_VARIANTS}
    wanted = [v for v in args.only.split(",") if v] or list(VARIANTS)
    if args.follow:
        what, changes = variants[args.follow]
        for suffix, (more, extra) in FOLLOW_UPS.items():
            variants[f"{args.follow}_{suffix}"] = (f"{what}; {more}", {**changes, **extra})
        wanted = [v for v in args.only.split(",") if v] or [f"{args.follow}_{s}" for s in FOLLOW_UPS]
    for name in wanted:
        what, changes = variants[name]
        results = []
        for k, fold in enumerate(folds):
            if name in PIXEL_VARIANTS:
                results.append(pixel_fold(changes, data, y, n_classes, fold))
            else:
                results.append(fine_tune_fold(changes, data, y, n_classes, fold, frozen, trunk, check_pixels=k == 0))
            log.info("%s fold %d/%d: accuracy %.3f, %d epochs, %.0f s", name, k + 1, len(folds),
                     results[-1]["scores"]["accuracy"], results[-1]["epochs_run"], results[-1]["seconds"])
        runs[name] = {"what": what, "changes": changes, "folds": results}
        if name not in PIXEL_VARIANTS and changes.get("train.validation_split", FINE_TUNE["train.validation_split"]):
            runs.setdefault("head_first_only", {"what": "the head solved on the fold's training rows less the 15% "
                                                "held out for early stopping (where fine-tuning starts)",
                                                "folds": [{"scores": r["head_first_scores"]} for r in results]})
        write(runs, seeds)
    write(runs, seeds)


def write(runs: dict, seeds: list[int]) -> None:
    """``benchmarks/finetune_cv.json`` and the Markdown table, from every run so far."""
    base = [f["scores"]["accuracy"] for f in runs["frozen_best"]["folds"]]
    table = {}
    for name, run in runs.items():
        accuracy = [f["scores"]["accuracy"] for f in run["folds"]]
        if len(accuracy) != len(base):
            continue
        seconds = [f["seconds"] for f in run["folds"] if "seconds" in f]
        checks = [f["pixel_check"] for f in run["folds"] if "pixel_check" in f]
        table[name] = {"what": run["what"], "accuracy": paired(accuracy, base),
                       "macro_f1": paired([f["scores"]["macro_f1"] for f in run["folds"]],
                                          [f["scores"]["macro_f1"] for f in runs["frozen_best"]["folds"]]),
                       "seconds_per_fit": float(np.median(seconds)) if seconds else None,
                       "pixel_check": max(checks) if checks else None}
    out = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "load_average": list(os.getloadavg())},
           "folds": f"{len(seeds)} x stratified {FOLDS}-fold over the 431 sample paintings, seeds {seeds}",
           "seeds": seeds, "fine_tune_base": FINE_TUNE, "table": table, "runs": runs}
    RESULTS.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print("| configuration | accuracy | vs frozen best (paired) | s per fit |\n|---|---|---|---|")
    for name, row in table.items():
        a = row["accuracy"]
        secs = f"{row['seconds_per_fit']:.0f}" if row["seconds_per_fit"] else ""
        print(f"| {name} | {a['mean']:.3f} ± {a['sem']:.3f} | {a['diff']:+.3f} ± {a['diff_sem']:.3f} | {secs} |")


if __name__ == "__main__":
    main()
