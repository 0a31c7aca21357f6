"""Scoring a model: metrics of predicted probabilities, per-artist tables and the figures.

Used by the ``evaluate`` stage and by cross-validation; nothing here trains or loads a model.
"""
