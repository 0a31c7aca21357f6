"""The model registry: a run's MLflow Model promoted to a version, tagged, with its alias moved."""

from __future__ import annotations

import mlflow
import pytest

from painter_id.cli import register
from painter_id.core.errors import PipelineError
from testkit.project import run
from testkit.served import NAME


def test_register_tags_the_version_and_moves_the_alias(in_store, capsys):
    client = mlflow.MlflowClient(in_store["uri"])
    first = client.get_model_version_by_alias(NAME, "champion")
    assert first.run_id == in_store["run"]["run_id"]
    commit = run(["git", "rev-parse", "HEAD"], in_store["root"]).stdout.strip()
    assert first.tags["dvc_exp"] == "tiny-lamb" and first.tags["git_commit"] == commit

    register.main(["--run", "tiny-lamb"])

    assert "alias 'champion' -> version" in capsys.readouterr().out
    now = client.get_model_version_by_alias(NAME, "champion")
    assert int(now.version) == int(first.version) + 1 and now.run_id == first.run_id
    with pytest.raises(PipelineError, match="--run 'nosuch': no such run"):
        register.main(["--run", "nosuch"])
    with pytest.raises(PipelineError, match="no finished run has both the metric 'test_nothing'"):
        register.main(["--metric", "test_nothing"])
