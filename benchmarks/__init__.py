"""Benchmarks of the pipeline's stages, the features stage's run cache, DVC overhead and the experiment loop (see README.md)."""
