"""The DVC stages of ``dvc.yaml``, one module each, run as ``python -m stages.<name>``.

source -> download -> split -> oversample -> resize -> train -> evaluate (``source`` only
fingerprints the data source, so ``download`` reruns when it changed). Stages never import each
other: what they share lives in the :mod:`painter_id` package.
"""

# First, before any stage imports MLflow or TensorFlow: the library quiets their start-up noise.
import painter_id  # noqa: E402,F401
