"""Every file and folder the pipeline reads or writes, named once, relative to the project root.

``dvc.yaml`` names the same paths as each stage's deps and outs (YAML cannot import them);
tests/core/test_paths.py checks that the two agree, so a path is changed here and there
together or the suite fails.
"""

from __future__ import annotations

from pathlib import Path

PARAMS_FILE = Path("params.yaml")

# What download reads when data.source is not "path" or "url": dvc.yaml makes data.path and
# data.url dependencies of download, so DVC itself sees a folder or a link change, and a
# dependency must exist. This tracked text file stands in for them (it is no code: editing
# the library never reruns download through it).
UNUSED_SOURCE = Path("sources/unused.txt")

# source
SOURCE_FILE = Path("data/source.json")

# download
RAW_DIR = Path("data/raw")
MANIFEST = RAW_DIR / "manifest.csv"
REJECTED = RAW_DIR / "rejected.csv"
ARTISTS = RAW_DIR / "artists.csv"

# split
SPLIT_DIR = Path("data/split")
SPLIT_TRAIN = SPLIT_DIR / "train.csv"
SPLIT_TEST = SPLIT_DIR / "test.csv"

# oversample
OVERSAMPLED_DIR = Path("data/oversampled")
OVERSAMPLED_TRAIN = OVERSAMPLED_DIR / "train.csv"

# resize
RESIZED_DIR = Path("data/resized")
RESIZED_FORMAT = RESIZED_DIR / "format.json"

# train
MODELS_DIR = Path("models")
MODEL_FILE = MODELS_DIR / "model.keras"
LABELS_FILE = MODELS_DIR / "labels.json"
# How the training images were brought to the model's input size: {"size": ..., "mode": ...}.
PREPROCESSING_FILE = MODELS_DIR / "preprocessing.json"
# The MLflow run of the training: {"run_id": ..., "experiment_id": ..., "tracking_uri": ...}.
RUN_FILE = MODELS_DIR / "run.json"
TRAIN_METRICS = Path("metrics/train.json")
HISTORY = Path("metrics/history.csv")
CV_FILE = Path("metrics/cv.json")

# evaluate
EVAL = Path("metrics/eval.json")
PER_ARTIST = Path("metrics/per_artist.csv")
CONFUSION_CSV = Path("metrics/confusion.csv")
CONFUSION_PNG = Path("metrics/confusion.png")
MISCLASSIFIED_PNG = Path("metrics/misclassified.png")
