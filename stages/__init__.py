"""Painter identification pipeline: one module per DVC stage plus small shared helpers.

Stages (run as ``python -m stages.<name>``): download, split, oversample, resize, train,
evaluate. Helpers: params, errors, files, images, backbones, tracking.
"""
