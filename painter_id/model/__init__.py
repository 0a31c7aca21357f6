"""The model and its features: backbones, the network built around them, and its training.

The backbone registry and preprocessing, style statistics (pooled and Gram layers), the
frozen backbone's features, the head's full-batch solver, fitting and cross-validation,
distribution strategies, test-time augmentation, and the files a training leaves in
``models/``.
"""
