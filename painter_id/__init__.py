"""painter-id: the library the pipeline's stages share, and the predict and compare commands.

The DVC stages live in ``stages/`` (one module per stage of ``dvc.yaml``); everything they
share is here, one job per module: params, errors and the stage runner, atomic outputs,
images, data sources, backbones, the resized arrays, the model files, tracking.
"""

import os

# TensorFlow's C++ start-up chatter (oneDNN notes, CPU feature hints) buries the stage logs
# in `dvc repro` output; errors still show. Set before anything imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
