"""The shared core: what every stage and command uses, whatever its concern.

Params (parsed and validated once), the one kind of user-facing error, the runner every
``__main__`` goes through, atomic outputs, the pipeline's paths, the workspace a queued
experiment belongs to, worker pools, CSV for people, and :mod:`painter_id.core.compat`, the
one home of every use of a private TensorFlow, Keras, MLflow or Python API. Nothing here
imports TensorFlow, Keras or MLflow at import time.
"""
