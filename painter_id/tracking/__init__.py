"""MLflow: where runs are recorded, what each run holds, the model it logs, and the registry.

The store (resolved once for a workspace and its queued experiments, created under a lock),
runs and their params, metrics and artifacts, the MLflow Model a training logs (a pyfunc
that takes image files), comparing runs and promoting one to the registry; and a team's
servers for a trial on one machine (PostgreSQL, S3, an MLflow server with logins) with the
checks that a member's shell reaches them.
"""
