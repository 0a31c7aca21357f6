"""painter-id: the library the pipeline's stages share, and its console commands.

The DVC stages live in ``stages/`` (one module per stage of ``dvc.yaml``); everything they
share is here, one folder per concern:

- :mod:`painter_id.core`: what every part uses: params, errors, the stage runner, atomic
  outputs, paths, worker pools, and the one home of private-API workarounds;
- :mod:`painter_id.sources`: where the paintings come from (synthetic, Kaggle, a URL, a
  folder or archive), fetched safely and normalised into ``data/raw``;
- :mod:`painter_id.data`: the data set as the pipeline shapes it: images, the split,
  oversampling and the resized arrays;
- :mod:`painter_id.model`: the network, its backbones and frozen features, training,
  cross-validation and test-time augmentation;
- :mod:`painter_id.evaluation`: scoring predictions and drawing the evaluation figures;
- :mod:`painter_id.tracking`: MLflow: the store, runs, the MLflow Model a training logs,
  comparing runs and the registry;
- :mod:`painter_id.serving`: predicting with a trained model, and the page to try one;
- :mod:`painter_id.cli`: the console commands (``painter-predict``, ``painter-page``,
  ``painter-compare``, ``painter-register``), which read their arguments and call the rest.

Nothing here imports a stage.
"""

import os

from painter_id.core.compat import quiet_tensorflow_startup

# TensorFlow's C++ start-up chatter (oneDNN notes, CUDA probes on a CPU machine) buries the
# stage logs in `dvc repro` output; errors still show. Set before anything imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
quiet_tensorflow_startup()
# MLflow's own INFO lines (schema migrations, validation steps) and artifact progress bars are
# noise in a stage's log; its warnings and errors still show, and the stages log what they record.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
