"""Test-time augmentation: average the model's predictions over a few views of each image.

Shared by the evaluate stage (``evaluate.tta``) and the predict command (``--tta``). The
views are made from the raw 0..255 batch, before the model, whose own Preprocess layer
then treats every view exactly as it treats a training image.
"""

from __future__ import annotations

import keras
import numpy as np
from tqdm import tqdm

from painter_id.core.params import TTA_MODES

ZOOM_CROP = 0.9  # flip_crops: the centre square covering this share of each side, resized back


def centre_zoom(batch: np.ndarray, share: float = ZOOM_CROP) -> np.ndarray:
    """The central ``share`` x ``share`` part of every image, bilinearly resized back to full size."""
    size = batch.shape[1]
    margin = int(round(size * (1.0 - share) / 2.0))
    if margin == 0:  # too small to zoom: the crop would be the image itself
        return batch.astype(np.float32)
    crop = batch[:, margin:size - margin, margin:size - margin]
    zoomed = keras.ops.image.resize(crop.astype(np.float32), (size, batch.shape[2]), interpolation="bilinear")
    return keras.ops.convert_to_numpy(zoomed)


def views(batch: np.ndarray, mode: str) -> list[np.ndarray]:
    """The augmented copies of ``batch`` (N, size, size, 3) whose predictions ``mode`` averages.

    ``none``: the batch itself; ``flip``: it and its mirror image; ``flip_crops``: those two
    plus a centre zoom (:data:`ZOOM_CROP`) of each.
    """
    if mode not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {mode!r}; use one of {TTA_MODES}")
    out = [batch]
    if mode in ("flip", "flip_crops"):
        out.append(batch[:, :, ::-1])
    if mode == "flip_crops":
        zoomed = centre_zoom(batch)
        out += [zoomed, zoomed[:, :, ::-1]]
    return out


def predict_probs(model: keras.Model, images: np.ndarray, batch_size: int, mode: str = "none") -> np.ndarray:
    """Class probabilities of ``images`` (raw pixels, possibly memory-mapped), averaged over the ``mode`` views.

    Works through ``batch_size`` rows at a time, so memory stays bounded however many rows
    there are.
    """
    n_classes = model.output_shape[-1]
    probs = np.zeros((len(images), n_classes), dtype=np.float32)
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc=f"predict (tta {mode})", unit="batch", disable=len(starts) < 2):
        # float32 for every view: one traced graph for all of them (the model casts pixels anyway).
        batch = np.asarray(images[start:start + batch_size], dtype=np.float32)
        batch_views = views(batch, mode)
        probs[start:start + len(batch)] = sum(
            np.asarray(model.predict_on_batch(view), dtype=np.float32) for view in batch_views
        ) / len(batch_views)
    return probs
