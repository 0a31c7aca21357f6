"""Every file and folder the pipeline reads or writes, named once, relative to the project root.

``dvc.yaml`` names the same paths as each stage's deps and outs (YAML cannot import them);
tests/core/test_paths.py checks that the two agree, so a path is changed here and there
together or the suite fails.
"""

from __future__ import annotations

from pathlib import Path

PARAMS_FILE = Path("params.yaml")

# What the file params name while no file is in use (data.path, data.url, model.weights_file):
# dvc.yaml makes them dependencies, so DVC itself sees a folder, a link or a weights file
# change, and a dependency must exist. This tracked text file stands in for them.
UNUSED_FILE = Path("unused.txt")

# Temporaries: a stage's work in progress, each in a pid-stamped folder here named by one of
# these prefixes (painter_id.core.atomic.make_temp_dir); git and DVC ignore them, and every
# stage removes those whose process is gone before it starts.
TEMP_PARENT = Path("data")
SOURCE_TEMP = ".source-"  # a download the source stage hashes
DOWNLOAD_TEMP = ".download-"  # a download and its extracted archive
WORKER_TEMP = ".worker-model-"  # a multi-worker non-chief's model, saved and dropped
ARTIFACT_TEMP = ".mlflow-artifact-"  # a file on its way to MLflow, credentials removed
MODEL_TEMP = ".mlflow-model-"  # the code of an MLflow Model on its way to MLflow
TEMP_PREFIXES = (SOURCE_TEMP, DOWNLOAD_TEMP, WORKER_TEMP, ARTIFACT_TEMP, MODEL_TEMP)

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

# features: the frozen backbone's features of every training and test painting
FEATURES_DIR = Path("data/features")
FEATURES_INFO = FEATURES_DIR / "info.json"  # whether features apply, and what made them
TRAIN_FEATURES = FEATURES_DIR / "train.npy"
TEST_FEATURES = FEATURES_DIR / "test.npy"
TEST_FLIP_FEATURES = FEATURES_DIR / "test_flip.npy"  # the test paintings mirrored, for evaluate.tta flip
EXTRACTOR = FEATURES_DIR / "extractor.keras"  # pixels in, features out: the frozen part of the model

# train
MODELS_DIR = Path("models")
# A model trained from the pixels is one Keras file; one whose head was solved on the features
# is the extractor that made them and the head's weights, assembled into one Keras model on load.
MODEL_FILE = MODELS_DIR / "model.keras"
EXTRACTOR_FILE = MODELS_DIR / "extractor.keras"
HEAD_FILE = MODELS_DIR / "head.npz"
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
