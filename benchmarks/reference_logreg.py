"""Reference point for the real-paintings results: logistic regression on frozen features.

Run from a project folder whose pipeline ran on real paintings with a MobileNet-sized image
(``data/resized/`` present), for example::

    python -m benchmarks.reference_logreg --weights ../shared/weights/mobilenet_2_5_224_tf_no_top.h5

It fits scikit-learn's LogisticRegression on MobileNet (alpha 0.25, ImageNet) global-average
pooled features of the training originals (no oversampled copies, no augmentation) and scores
the same 20% test split the pipeline's evaluate stage scores, so the two are comparable.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from painter_id.core.workspace import main_workspace
from painter_id.data import resized
from painter_id.model.backbones import Preprocess, build_backbone, resolve_weights
from painter_id.model.registry import get_backbone


def pooled_features(images: np.ndarray, weights: str, alpha: float, batch_size: int = 64) -> np.ndarray:
    """MobileNet global-average-pooled features of uint8 images, batch by batch."""
    import keras

    entry = get_backbone("MobileNet")
    size = images.shape[1]
    backbone = build_backbone(entry, size, resolve_weights("file", weights, main_workspace()), alpha)
    inputs = keras.Input((size, size, 3))
    outputs = keras.layers.GlobalAveragePooling2D()(backbone(Preprocess(entry.preprocess)(inputs), training=False))
    extractor = keras.Model(inputs, outputs)
    return np.concatenate([extractor.predict_on_batch(images[i:i + batch_size])
                           for i in range(0, len(images), batch_size)])


def main() -> None:
    """Print the reference logistic regression's test accuracy and macro-F1 as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="MobileNet alpha 0.25 no-top ImageNet weights (.h5)")
    parser.add_argument("--alpha", type=float, default=0.25)
    parser.add_argument("--size", type=int, default=224, help="image side the reference is measured at")
    args = parser.parse_args()

    train, test = resized.load_split("train"), resized.load_split("test")
    if train.size != args.size:
        raise SystemExit(f"data/resized holds {train.size} px images; the reference is defined at {args.size} px: "
                         f"run `dvc repro resize` with resize.image_size={args.size} first (or pass --size {train.size})")
    originals = np.array([not source for source in train.sources])
    labels = resized.class_names(train.artists)
    y_train = resized.encode(train.artists, labels, "train")[originals]
    y_test = resized.encode(test.artists, labels, "test")
    x_train = pooled_features(np.asarray(train.images)[originals], args.weights, args.alpha)
    x_test = pooled_features(np.asarray(test.images), args.weights, args.alpha)
    classifier = LogisticRegression(max_iter=5000).fit(x_train, y_train)
    predicted = classifier.predict(x_test)
    print(json.dumps({
        "n_train": int(len(y_train)),
        "n_test": int(len(y_test)),
        "accuracy": round(float(accuracy_score(y_test, predicted)), 4),
        "macro_f1": round(float(f1_score(y_test, predicted, average="macro")), 4),
    }, indent=2))


if __name__ == "__main__":
    main()
