"""Serving and prediction: a trained model put to use on new paintings.

Predicting from a ``.keras`` file or an MLflow Model (``painter-predict``) and the web page
to try one (``painter-page``). ``mlflow models serve`` serves the MLflow Model itself
(:mod:`painter_id.tracking.mlflow_model`).
"""
