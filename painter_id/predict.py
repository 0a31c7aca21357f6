"""Command ``painter-predict``: which painter made these paintings? (not a DVC stage)

    painter-predict IMAGE_OR_FOLDER... [--model models/model.keras | models:/painter-id@champion]
        [--labels models/labels.json] [--top-k 3] [--tta none|flip|flip_crops]

Prints CSV to stdout, ``path,rank,artist,probability``, the ``--top-k`` most likely artists
of each image, most likely first. Folders are searched recursively for image files. A file
that cannot be read gets one row ``path,0,ERROR: <reason>,`` and the others go on; a path
named on the command line that does not exist also makes the command end with a one-line
error (exit 2). Text cells that a spreadsheet would run as a formula (an artist named
``=...``) are written with a leading ``'`` (:mod:`painter_id.spreadsheet`).

Also ``python -m painter_id.predict``. New images go through the pipeline's own code:
:func:`painter_id.images.load_square` with the
size of the model's input and the ``resize.mode`` the training images were made with
(``models/preprocessing.json``, written by train), then the model's own Preprocess layer.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, TextIO

import keras
import numpy as np
from tqdm import tqdm

from painter_id import model_files, tta
from painter_id.errors import PipelineError
from painter_id.images import ImageRejected, is_image_name, load_square
from painter_id.params import PARAMS_FILE, DataParams, load_section
from painter_id.runner import positive_int, run_stage
from painter_id.spreadsheet import SafeWriter

log = logging.getLogger(__name__)

HEADER = ["path", "rank", "artist", "probability"]
DEFAULT_MODE = "pad"  # resize.mode's default, for models trained before preprocessing.json existed


def find_images(targets: Sequence[str]) -> list[Path]:
    """The files named, plus every image file under the folders named (recursively, sorted).

    Hidden files and folders are skipped; a named file is kept whatever its suffix, so a
    wrong file gets an error row rather than silence.
    """
    found: list[Path] = []
    for target in targets:
        root = Path(target)
        if not root.is_dir():
            found.append(root)
            continue
        inside = []
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = [name for name in subfolders if not name.startswith(".")]
            inside += [Path(folder) / name for name in files if is_image_name(name)]
        if not inside:
            log.warning("%s: no image files in this folder", root)
        found += sorted(inside)
    return found


def resize_mode(model_path: Path, size: int) -> str:
    """The ``resize.mode`` of the model's training images.

    Read from ``preprocessing.json`` beside the model; a model without one (trained before
    it existed) falls back to ``params.yaml`` in the current folder, else ``pad``.
    """
    info_path = model_path.parent / model_files.PREPROCESSING_FILE.name
    if info_path.exists():
        info = model_files.read_preprocessing(info_path)
        if info["size"] != size:
            raise PipelineError(f"{info_path} says {info['size']} px but {model_path} takes {size} px: they come "
                                f"from different trainings; {model_files.RETRAIN_HINT}")
        return info["mode"]
    mode = load_section("resize").mode if Path(PARAMS_FILE).exists() else DEFAULT_MODE
    log.warning("%s: not found; resizing images with mode %r (%s)", info_path, mode,
                f"resize.mode of {PARAMS_FILE}" if Path(PARAMS_FILE).exists() else "the default")
    return mode


def ranked(probs: np.ndarray, labels: Sequence[str], top_k: int) -> list[tuple[int, str, str]]:
    """``(rank, artist, probability)`` of the ``top_k`` most likely artists, most likely first."""
    order = np.argsort(-probs, kind="stable")[:top_k]
    return [(rank, labels[c], f"{probs[c]:.6f}") for rank, c in enumerate(order, start=1)]


@dataclass(frozen=True)
class Predictor:
    """A trained model with what it takes to use it: its labels, the resize mode, how to predict."""

    model: keras.Model
    labels: Sequence[str]
    mode: str  # resize mode of the training images (pad, crop, stretch)
    top_k: int = 3
    tta: str = "none"
    batch_size: int = 32

    @property
    def size(self) -> int:
        """Side of the square images the model takes."""
        return int(self.model.input_shape[1])


def predict_files(paths: Sequence[Path], predictor: Predictor, out: TextIO) -> int:
    """Write the CSV rows of ``paths`` to ``out``, a batch of images at a time; return the error count.

    Only one batch of decoded images is held at a time, so a folder of any size fits in memory.
    """
    max_pixels = DataParams().max_pixels  # the download stage's guard against decompression bombs
    writer = SafeWriter(out, lineterminator="\n")
    writer.writerow(HEADER)
    errors = 0
    batch_size = predictor.batch_size
    with tqdm(total=len(paths), desc="predict", unit="img") as progress:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            arrays, results = [], []
            for path in chunk:
                try:
                    arrays.append(load_square(path, predictor.size, predictor.mode, max_pixels=max_pixels))
                    results.append(None)
                except ImageRejected as exc:
                    results.append(str(exc))
            probs = iter(tta.predict_probs(predictor.model, np.stack(arrays), len(arrays), predictor.tta)
                         if arrays else [])
            for path, error in zip(chunk, results):
                if error is not None:
                    errors += 1
                    writer.writerow([path, 0, f"ERROR: {error}", ""])
                else:
                    writer.writerows([path, *row] for row in ranked(next(probs), predictor.labels, predictor.top_k))
            out.flush()
            progress.update(len(chunk))
    return errors


def is_model_uri(text: str) -> bool:
    """True for an MLflow model URI (``models:/name@alias``, ``runs:/id/model``, ...) rather than a file."""
    return text.startswith(("models:/", "runs:/")) or "://" in text


def _model_arg(text: str) -> Path | str:
    # Path() would fold the "//" of a URI such as file:///...; model URIs stay text.
    return text if is_model_uri(text) else Path(text)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="painter-predict",
        description="Print the most likely painters of images (CSV: path,rank,artist,probability).",
    )
    parser.add_argument("paths", nargs="+", metavar="IMAGE_OR_FOLDER",
                        help="image files, or folders searched recursively for images")
    parser.add_argument("--model", type=_model_arg, default=model_files.MODEL_FILE,
                        help="a .keras file, or an MLflow model URI such as models:/painter-id@champion "
                             "(default: %(default)s)")
    parser.add_argument("--labels", type=Path, default=None,
                        help="the model's artist names (default: labels.json beside the model)")
    parser.add_argument("--top-k", type=positive_int, default=3,
                        help="artists per image, at most the number the model knows (default: %(default)s)")
    parser.add_argument("--tta", choices=tta.TTA_MODES, default="none",
                        help="test-time augmentation, as evaluate.tta (default: %(default)s)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="default: %(default)s")
    return parser.parse_args(argv)


def mlflow_predictor(uri: str, args: argparse.Namespace) -> Predictor:
    """A :class:`Predictor` from an MLflow Model (``models:/painter-id@champion``): its labels and resize mode travel with it."""
    from painter_id import mlflow_model

    inner = mlflow_model.painter_model(mlflow_model.load(uri, mlflow_model.project_store()), uri)
    return Predictor(inner.model, inner.labels, inner.mode, args.top_k, args.tta, args.batch_size)


def file_predictor(args: argparse.Namespace) -> Predictor:
    """A :class:`Predictor` from a ``.keras`` file with ``labels.json`` and ``preprocessing.json`` beside it."""
    model = model_files.load_model(args.model)
    labels_path = args.labels or args.model.parent / model_files.LABELS_FILE.name
    labels = model_files.read_labels(labels_path)
    model_files.check_classes(model, labels, args.model, labels_path)
    mode = resize_mode(args.model, int(model.input_shape[1]))
    return Predictor(model, labels, mode, args.top_k, args.tta, args.batch_size)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Predict the painters of the images named in ``argv`` (default: the command line)."""
    args = parse_args(argv)
    predictor = mlflow_predictor(args.model, args) if isinstance(args.model, str) else file_predictor(args)
    top_k = min(args.top_k, len(predictor.labels))
    if top_k < args.top_k:
        log.warning("--top-k %d: the model knows only %d artists; printing %d per image",
                    args.top_k, len(predictor.labels), top_k)
    paths = find_images(args.paths)
    errors = predict_files(paths, dataclasses.replace(predictor, top_k=top_k), sys.stdout)
    log.info("%d images, %d unreadable", len(paths), errors)
    missing = [target for target in args.paths if not os.path.lexists(target)]
    if missing:
        # Their rows say ERROR too, but a mistyped path must not pass as a success (exit 0) in a script.
        raise PipelineError(f"{missing[0]}: no such file or folder ({len(missing)} of the paths named); "
                            "check the path")


def cli() -> None:
    """Entry point of the ``painter-predict`` console command."""
    run_stage("predict", main)


if __name__ == "__main__":
    cli()
