"""Which frozen-MobileNet features identify a painter's hand? Cross-validated on the sample paintings.

Research benchmark for issue #18 item 3. It loads the 431 sample paintings of
``../shared/artworks-sample`` with the pipeline's own image code
(:func:`painter_id.data.images.load_square`, mode ``pad``), runs frozen MobileNet (alpha 0.25,
ImageNet weights) over them once per image size, and keeps per layer the average-pooled map
(the pipeline's ``pool``) and its uncentred Gram matrix (second moments of the channels, as in
neural style transfer). Every candidate feature set is built from those cached statistics and
scored by the same repeated stratified k-fold over all paintings: standardisation, then
scikit-learn's LogisticRegression whose C is chosen by an inner 3-fold cross-validation on
each outer training part (never by the outer folds); ``--raw`` leaves out the standardisation,
as the pipeline's head sees the features. Run::

    python -m benchmarks.style_features [--repeats 4] [--only baseline,gram5] [--raw]

It prints a Markdown table (accuracy and macro-F1, mean and standard error over the outer
folds, and the paired difference to the baseline on the same folds) and writes
``benchmarks/style_features.json``. The backbone statistics are cached in
``.cache/style_features/`` (about 1.3 GB), so a rerun only refits the classifiers. Not a test:
nothing here asserts a score.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "artworks-sample"
WEIGHTS = REPO.parent / "shared" / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
CACHE = REPO / ".cache" / "style_features"
RESULTS = REPO / "benchmarks" / "style_features.json"
# Every pointwise block whose statistics a candidate may use; conv_pw_13_relu is the last layer.
LAYERS = ("conv_pw_3_relu", "conv_pw_5_relu", "conv_pw_7_relu", "conv_pw_9_relu", "conv_pw_11_relu",
          "conv_pw_12_relu", "conv_pw_13_relu")
BASELINE_LAYERS = ("conv_pw_5_relu", "conv_pw_11_relu", "conv_pw_12_relu", "conv_pw_13_relu")
# Inverse regularisation strengths the inner cross-validation chooses from.
CS = (0.003, 0.01, 0.03, 0.1, 0.3)
RAW_CS = (0.1, 0.3, 1.0, 3.0, 10.0)  # unstandardised features (--raw) need less regularisation

log = logging.getLogger("benchmarks.style_features")


def sample() -> tuple[list[Path], np.ndarray, list[str]]:
    """The sample paintings (manifest order), their integer labels and the artist names."""
    with open(SAMPLE / "manifest.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    artists = sorted({row["artist"] for row in rows})
    paths = [SAMPLE / "images" / row["artist"] / row["file"] for row in rows]
    return paths, np.array([artists.index(row["artist"]) for row in rows]), artists


def extractor(size: int):
    """Pixels -> per layer of ``LAYERS``: (average-pooled map, Gram matrix / positions), MobileNet 0.25 frozen."""
    import keras

    from painter_id.model.backbones import Preprocess, build_backbone, with_pooled_layers
    from painter_id.model.registry import get_backbone

    entry = get_backbone("MobileNet")
    backbone = build_backbone(entry, size, str(WEIGHTS), 0.25)
    backbone.trainable = False
    # with_pooled_layers puts the last layer first; LAYERS ends with it.
    multi = with_pooled_layers(backbone, LAYERS[:-1])
    inputs = keras.Input((size, size, 3))
    maps = multi(Preprocess(entry.preprocess)(inputs), training=False)
    maps = maps[1:] + maps[:1]
    outputs = []
    for m in maps:
        flat = keras.ops.reshape(m, (-1, m.shape[1] * m.shape[2], m.shape[3]))
        gram = keras.ops.einsum("bnc,bnd->bcd", flat, flat) / (m.shape[1] * m.shape[2])
        outputs += [keras.ops.mean(flat, axis=1), gram]
    return keras.Model(inputs, outputs)


def backbone_stats(paths: list[Path], size: int, flip: bool = False, batch: int = 16) -> dict[str, np.ndarray]:
    """``{"<layer>/mean": N x C, "<layer>/gram": N x C x C}`` at ``size`` px, cached in ``CACHE``."""
    path = CACHE / f"{size}{'_flip' if flip else ''}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return dict(stored)
    from painter_id.data.images import load_square

    start = time.perf_counter()
    model = extractor(size)
    images = np.stack([load_square(p, size, "pad") for p in paths])
    if flip:
        images = images[:, :, ::-1]
    parts = [model.predict_on_batch(images[i:i + batch]) for i in range(0, len(images), batch)]
    stats = {}
    for k, layer in enumerate(LAYERS):
        stats[f"{layer}/mean"] = np.concatenate([p[2 * k] for p in parts]).astype(np.float32)
        stats[f"{layer}/gram"] = np.concatenate([p[2 * k + 1] for p in parts]).astype(np.float32)
    seconds = time.perf_counter() - start
    log.info("%d px%s: statistics of %d paintings in %.1f s", size, " mirrored" if flip else "", len(paths), seconds)
    stats["seconds"] = np.array(seconds)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **stats)
    tmp.rename(path)
    return stats


# ---------------------------------------------------------------- candidate features

def gap(stats: dict, layers=BASELINE_LAYERS) -> np.ndarray:
    """The pipeline's ``pool``: the average-pooled maps of ``layers``, concatenated."""
    return np.concatenate([stats[f"{layer}/mean"] for layer in layers], axis=1)


def mean_std(stats: dict, layers=BASELINE_LAYERS) -> np.ndarray:
    """Mean and standard deviation of every channel over the positions (first and second moment)."""
    parts = []
    for layer in layers:
        mean = stats[f"{layer}/mean"]
        second = np.diagonal(stats[f"{layer}/gram"], axis1=1, axis2=2)
        parts += [mean, np.sqrt(np.maximum(second - mean ** 2, 0.0))]
    return np.concatenate(parts, axis=1)


def projection(channels: int, dim: int, seed: int = 0) -> np.ndarray:
    """A fixed Gaussian ``channels x dim`` projection (identity when ``dim`` >= ``channels``)."""
    if dim >= channels:
        return np.eye(channels, dtype=np.float32)
    return (np.random.default_rng(seed).standard_normal((channels, dim)) / np.sqrt(dim)).astype(np.float32)


def gram(stats: dict, layer: str, dim: int = 64, centred: bool = False) -> np.ndarray:
    """Upper triangle of the (projected) Gram matrix of ``layer``, signed square root, L2-normalised.

    Projecting the channels before the Gram is the same as ``P^T G P`` on the cached Gram.
    """
    g = stats[f"{layer}/gram"]
    if centred:
        mean = stats[f"{layer}/mean"]
        g = g - mean[:, :, None] * mean[:, None, :]
    p = projection(g.shape[1], dim)
    g = np.einsum("ci,ncd,dj->nij", p, g, p)
    rows, cols = np.triu_indices(g.shape[1])
    flat = g[:, rows, cols]
    flat = np.sign(flat) * np.sqrt(np.abs(flat))
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)


# ---------------------------------------------------------------- scoring

def classifier(seed: int, raw: bool = False):
    """Standardise, then a logistic regression whose C an inner 3-fold CV picks from ``CS``.

    ``raw``: no standardisation, C from ``RAW_CS``: what the pipeline's softmax head sees (it
    takes the ``pool`` features as they are), so a gain that only standardisation unlocks shows.
    """
    inner = StratifiedKFold(3, shuffle=True, random_state=seed)
    # tol 1e-3: scores settle well before sklearn's default 1e-4 on 2 shared cores; accuracy picks C.
    regression = LogisticRegressionCV(Cs=list(RAW_CS if raw else CS), cv=inner, max_iter=3000, tol=1e-3,
                                      scoring="accuracy", use_legacy_attributes=False)
    return regression if raw else make_pipeline(StandardScaler(), regression)


def score_fold(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, ensemble: bool,
               raw: bool = False) -> tuple[float, float, float]:
    """Accuracy, macro-F1 on ``test`` of a model fitted on ``train`` only, and the C it chose.

    ``ensemble``: the average probability of 5 models, each fitted on 4/5 of ``train`` (the
    fold models of an inner 5-fold CV) with the C the single model chose.
    """
    model = classifier(0, raw).fit(x[train], y[train])
    if ensemble and not raw:  # the ensemble is scored standardised only
        c = float(np.ravel(model[-1].C_)[0])
        from sklearn.linear_model import LogisticRegression

        probs = 0
        for part, _ in StratifiedKFold(5, shuffle=True, random_state=1).split(train, y[train]):
            rows = train[part]
            member = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, tol=1e-3)).fit(x[rows], y[rows])
            probs = probs + member.predict_proba(x[test])
        predicted = model[-1].classes_[np.argmax(probs, axis=1)]
    else:
        predicted = model.predict(x[test])
    regression = model if raw else model[-1]
    return (accuracy_score(y[test], predicted), f1_score(y[test], predicted, average="macro"),
            float(np.ravel(regression.C_)[0]))


def cross_validate(x: np.ndarray, y: np.ndarray, repeats: int, ensemble: bool = False, raw: bool = False) -> np.ndarray:
    """``(folds, 3)``: accuracy, macro-F1 and chosen C of every outer fold of a repeated stratified 5-fold."""
    from joblib import Parallel, delayed

    folds = RepeatedStratifiedKFold(n_splits=5, n_repeats=repeats, random_state=0).split(x, y)
    scores = Parallel(n_jobs=2)(delayed(score_fold)(x, y, tr, te, ensemble, raw) for tr, te in folds)
    return np.array(scores)


# ---------------------------------------------------------------- the candidates

def candidates() -> dict[str, tuple[str, Callable[[dict], np.ndarray]]]:
    """``name -> (what it is, stats by size -> features)``; ``s[448]`` is 448 px, ``s["448f"]`` its mirror."""
    g5 = lambda s: gram(s[448], "conv_pw_5_relu")  # noqa: E731 (a table of one-liners)
    g11 = lambda s: gram(s[448], "conv_pw_11_relu")  # noqa: E731
    base = lambda s: gap(s[448])  # noqa: E731
    cat = np.concatenate
    return {
        "baseline": ("(a) average pooling of blocks 5, 11, 12, 13 at 448 px (today's best)", base),
        "gap_7_layers": ("average pooling of blocks 3, 5, 7, 9, 11, 12, 13 at 448 px", lambda s: gap(s[448], LAYERS)),
        "gram5": ("(b) Gram of block 5 (64 channels), alone", g5),
        "gram3": ("(b) Gram of block 3 (32 channels), alone", lambda s: gram(s[448], "conv_pw_3_relu")),
        "gram11_d64": ("(b) Gram of block 11 projected to 64 channels, alone", g11),
        "base+gram3": ("(b) baseline + Gram of block 3", lambda s: cat([base(s), gram(s[448], "conv_pw_3_relu")], 1)),
        "base+gram5": ("(b) baseline + Gram of block 5", lambda s: cat([base(s), g5(s)], 1)),
        "base+gram5_centred": ("(b) baseline + covariance (centred Gram) of block 5",
                               lambda s: cat([base(s), gram(s[448], "conv_pw_5_relu", centred=True)], 1)),
        "base+gram11_d64": ("(b) baseline + Gram of block 11 projected to 64", lambda s: cat([base(s), g11(s)], 1)),
        "base+gram11_d32": ("(b) baseline + Gram of block 11 projected to 32",
                            lambda s: cat([base(s), gram(s[448], "conv_pw_11_relu", 32)], 1)),
        "base+gram5+gram11_d64": ("(b) baseline + Gram of block 5 + Gram of block 11 (64)",
                                  lambda s: cat([base(s), g5(s), g11(s)], 1)),
        "scales_224+448_concat": ("(c) average pooling at 224 and 448 px, concatenated",
                                  lambda s: cat([gap(s[224]), base(s)], 1)),
        "scales_224+448_mean": ("(c) average pooling at 224 and 448 px, averaged", lambda s: (gap(s[224]) + base(s)) / 2),
        "scales_448+672_concat": ("(c) average pooling at 448 and 672 px, concatenated",
                                  lambda s: cat([base(s), gap(s[672])], 1)),
        "scales_224+448+672_concat": ("(c) average pooling at 224, 448 and 672 px, concatenated",
                                      lambda s: cat([gap(s[224]), base(s), gap(s[672])], 1)),
        "scales_448+672+gram3": ("(b)+(c) average pooling and Gram of block 3 at 448 and 672 px, concatenated",
                                 lambda s: cat([base(s), gram(s[448], "conv_pw_3_relu"), gap(s[672]),
                                                gram(s[672], "conv_pw_3_relu")], 1)),
        "scales_448+672_7_layers": ("(c) average pooling of blocks 3, 5, 7, 9, 11, 12, 13 at 448 and 672 px",
                                    lambda s: cat([gap(s[448], LAYERS), gap(s[672], LAYERS)], 1)),
        "scale_672": ("(c) average pooling at 672 px only", lambda s: gap(s[672])),
        "flip_mean": ("(c) baseline averaged with the mirror image's", lambda s: (base(s) + gap(s["448f"])) / 2),
        "mean_std": ("(d) mean and standard deviation per channel, blocks 5, 11, 12, 13", lambda s: mean_std(s[448])),
        "ensemble": ("(e) baseline features, average of the 5 inner-fold models", base),
    }


def summary(scores: np.ndarray, baseline: np.ndarray) -> dict:
    """Mean and standard error (over outer folds) of accuracy and macro-F1, and the paired gain on accuracy."""
    n = len(scores)
    diff = scores[:, 0] - baseline[:, 0]
    return {
        "accuracy": round(float(scores[:, 0].mean()), 4), "accuracy_se": round(float(scores[:, 0].std(ddof=1) / n ** 0.5), 4),
        "macro_f1": round(float(scores[:, 1].mean()), 4), "macro_f1_se": round(float(scores[:, 1].std(ddof=1) / n ** 0.5), 4),
        "gain": round(float(diff.mean()), 4), "gain_se": round(float(diff.std(ddof=1) / n ** 0.5), 4),
        "median_c": float(np.median(scores[:, 2])),
    }


def main() -> None:
    """Score every candidate (or ``--only`` some) and write the table and ``benchmarks/style_features.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4, help="repeats of the outer 5-fold CV")
    parser.add_argument("--only", default="", help="comma-separated candidate names (the baseline always runs)")
    parser.add_argument("--raw", action="store_true", help="no standardisation, as the pipeline's head sees the features")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    paths, y, _ = sample()
    stats = {448: backbone_stats(paths, 448), 224: backbone_stats(paths, 224), 672: backbone_stats(paths, 672),
             "448f": backbone_stats(paths, 448, flip=True)}
    table = candidates()
    wanted = ["baseline"] + [n for n in (args.only.split(",") if args.only else table) if n and n != "baseline"]
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results.pop("_extraction_seconds", None)
    base_scores = None
    for name in wanted:
        what, build = table[name]
        x = build(stats)
        start = time.perf_counter()
        scores = cross_validate(x, y, args.repeats, ensemble=name == "ensemble", raw=args.raw)
        base_scores = scores if base_scores is None else base_scores
        row = {"what": what, "dim": int(x.shape[1]), "cv_seconds": round(time.perf_counter() - start, 1),
               **summary(scores, base_scores), "folds": f"{args.repeats}x5", "fold_accuracy": scores[:, 0].round(4).tolist()}
        results[f"{name}@{row['folds']}{'@raw' if args.raw else ''}"] = row
        log.info("%-28s dim %5d  acc %.3f +- %.3f  F1 %.3f +- %.3f  gain %+.3f +- %.3f  (%.0f s)", name, row["dim"],
                 row["accuracy"], row["accuracy_se"], row["macro_f1"], row["macro_f1_se"], row["gain"], row["gain_se"],
                 row["cv_seconds"])
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    extraction = {str(size): round(float(s["seconds"]), 1) for size, s in stats.items()}
    results["_extraction_seconds"] = extraction
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
