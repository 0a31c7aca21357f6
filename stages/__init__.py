"""The DVC stages of ``dvc.yaml``, one module each, run as ``python -m stages.<name>``.

download -> split -> oversample -> resize -> train -> evaluate. Stages never import each
other: what they share lives in the :mod:`painter_id` package.
"""
