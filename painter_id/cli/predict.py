"""Command ``painter-predict``: which painter made these paintings? (not a DVC stage)

    painter-predict IMAGE_OR_FOLDER... [--model models | models:/painter-id@champion]
        [--labels models/labels.json] [--top-k 3] [--tta none|flip|flip_crops]

Prints CSV to stdout, ``path,rank,artist,probability``, the ``--top-k`` most likely artists
of each image, most likely first. Folders are searched recursively for image files. A file
that cannot be read gets one row ``path,0,ERROR: <reason>,`` and the others go on; a path
named on the command line that does not exist also makes the command end with a one-line
error (exit 2). Text cells that a spreadsheet would run as a formula (an artist named
``=...``) are written with a leading ``'`` (:mod:`painter_id.cli.spreadsheet`). Also
``python -m painter_id.cli.predict``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Optional, Sequence, TextIO

from painter_id.cli.spreadsheet import SafeWriter
from painter_id.core.errors import PipelineError
from painter_id.core.params import TTA_MODES, DataParams
from painter_id.core.paths import MODELS_DIR
from painter_id.core.runner import positive_int, run_stage

log = logging.getLogger(__name__)

HEADER = ["path", "rank", "artist", "probability"]


def predict_files(files: Sequence[Path], predictor, out: TextIO) -> int:
    """Write the CSV rows of ``files`` to ``out``, a batch of images at a time; return the error count.

    Only one batch of decoded images is held at a time, so a folder of any size fits in memory.
    """
    from tqdm import tqdm

    from painter_id.serving.predict import predict_batch

    max_pixels = DataParams().max_pixels  # the download stage's guard against decompression bombs
    writer = SafeWriter(out, lineterminator="\n")
    writer.writerow(HEADER)
    errors = 0
    with tqdm(total=len(files), desc="predict", unit="img") as progress:
        for start in range(0, len(files), predictor.batch_size):
            chunk = files[start:start + predictor.batch_size]
            for path, result in zip(chunk, predict_batch(predictor, chunk, max_pixels)):
                if isinstance(result, str):
                    errors += 1
                    writer.writerow([path, 0, f"ERROR: {result}", ""])
                else:
                    writer.writerows([path, *row] for row in result)
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
    parser.add_argument("--model", type=_model_arg, default=MODELS_DIR,
                        help="the folder train writes, a .keras file, or an MLflow model URI such as "
                             "models:/painter-id@champion (default: %(default)s)")
    parser.add_argument("--labels", type=Path, default=None,
                        help="the model's artist names (default: labels.json beside the model)")
    parser.add_argument("--top-k", type=positive_int, default=3,
                        help="artists per image, at most the number the model knows (default: %(default)s)")
    parser.add_argument("--tta", choices=TTA_MODES, default="none",
                        help="test-time augmentation, as evaluate.tta (default: %(default)s)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="default: %(default)s")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Predict the painters of the images named in ``argv`` (default: the command line)."""
    args = parse_args(argv)
    from painter_id.serving.predict import file_predictor, find_images, mlflow_predictor

    if isinstance(args.model, str):
        predictor = mlflow_predictor(args.model, args.top_k, args.tta, args.batch_size)
    else:
        predictor = file_predictor(args.model, args.labels, args.top_k, args.tta, args.batch_size)
    top_k = min(args.top_k, len(predictor.labels))
    if top_k < args.top_k:
        log.warning("--top-k %d: the model knows only %d artists; printing %d per image",
                    args.top_k, len(predictor.labels), top_k)
    files = find_images(args.paths)
    errors = predict_files(files, dataclasses.replace(predictor, top_k=top_k), sys.stdout)
    log.info("%d images, %d unreadable", len(files), errors)
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
