"""Painter identification pipeline: one module per DVC stage plus small shared helpers.

Stages (run as ``python -m stages.<name>``): download, split, oversample, resize, train,
evaluate. Helpers: params, errors, files, images, backbones, tracking.
"""

import os

# TensorFlow's C++ start-up chatter (oneDNN notes, CPU feature hints) buries the stage logs
# in `dvc repro` output; errors still show. Set before any stage imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
