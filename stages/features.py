"""Stage ``features``: the frozen backbone's features of every training and test painting.

Reads ``data/resized/``, the weights file ``model.weights_file`` names (when ``model.weights``
is ``file``) and the params that decide the features (dvc.yaml lists them); writes
``data/features/``: ``info.json`` always, and when the head can be solved on features
(:func:`painter_id.model.features.why_not_used`) also ``extractor.keras`` (pixels in,
features out), ``train.npy``, ``test.npy`` and ``test_flip.npy`` (the test paintings
mirrored, for ``evaluate.tta: flip``). Otherwise ``info.json`` says why not, in a second and
without TensorFlow, and train learns from the pixels.
"""

from __future__ import annotations

import logging

import numpy as np

from painter_id.core.atomic import atomic_dir, write_json
from painter_id.core.params import load_all
from painter_id.core.paths import EXTRACTOR, FEATURES_DIR, FEATURES_INFO, TEST_FEATURES, TEST_FLIP_FEATURES, TRAIN_FEATURES
from painter_id.core.runner import run_stage
from painter_id.data import resized
from painter_id.data.images import sha256_file
from painter_id.data.inputs import FEATURES_FORMAT
from painter_id.model import features
from painter_id.model.registry import check_size, get_backbone

log = logging.getLogger(__name__)


def main() -> None:
    params = load_all()
    # The backbone's name and the image size are checked here, the first stage that reads them.
    check_size(get_backbone(params.model.backbone), resized.read_format()["size"])
    reason = features.why_not_used(params)
    if reason:
        log.info("features not used: %s", reason)
        with atomic_dir(FEATURES_DIR) as tmp:
            write_json(tmp / FEATURES_INFO.name, {"format": FEATURES_FORMAT, "used": False, "reason": reason})
        return
    train, test = resized.load_split("train"), resized.load_split("test", allow_empty=True)
    net = features.feature_network(params, train.size, len(resized.class_names(train.artists)))
    extractor = features.extractor_model(net.model)
    batch = params.runtime.predict_batch_size  # speed only: the features are the same
    with atomic_dir(FEATURES_DIR) as tmp:
        extractor.save(tmp / EXTRACTOR.name)
        run, width = features.forward(extractor), int(extractor.output.shape[-1])
        arrays = {TRAIN_FEATURES: (train.images, "features train"), TEST_FEATURES: (test.images, "features test"),
                  TEST_FLIP_FEATURES: (features.mirrored(test.images), "features test, mirrored")}
        for path, (images, desc) in arrays.items():
            np.save(tmp / path.name, features.compute(run, images, batch, width, desc), allow_pickle=False)
        sizes = net.sizes()
        write_json(tmp / FEATURES_INFO.name, {
            "format": FEATURES_FORMAT, "used": True, "backbone": net.entry.name, "width": width,
            "backbone_layers": sizes["backbone_layers"], "backbone_params": sizes["frozen_params"],
            "train_rows": len(train.paths), "test_rows": len(test.paths), "image_size": train.size,
            "extractor_sha256": sha256_file(tmp / EXTRACTOR.name)})
    log.info("features: %d training and %d test paintings, %d values each, from the frozen %s",
             len(train.paths), len(test.paths), width, net.entry.name)


if __name__ == "__main__":
    run_stage("features", main)
