"""Benchmarks of the pipeline's data stages, training input, feature cache and DVC overhead (``python -m benchmarks``)."""
