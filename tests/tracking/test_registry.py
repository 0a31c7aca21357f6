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

    register.main(["--run", "tiny-lamb"])  # already a version: the alias stays on it, no second version

    assert "already registered: painter-id version 1" in capsys.readouterr().out
    now = client.get_model_version_by_alias(NAME, "champion")
    assert now.version == first.version and len(client.search_model_versions(f"name = '{NAME}'")) == 1
    with pytest.raises(PipelineError, match="--run 'nosuch': no such run"):
        register.main(["--run", "nosuch"])
    with pytest.raises(PipelineError, match="no finished run has both the metric 'test_nothing'"):
        register.main(["--metric", "test_nothing"])


@pytest.mark.parametrize("alias, reason", [("latest", "keeps for itself"), ("v7", "keeps for itself"),
                                           ("two words", "letters, digits"), ("a/b", "letters, digits"),
                                           ("", "letters, digits")])
def test_an_alias_the_registry_refuses_is_one_line_and_writes_nothing(in_store, alias, reason):
    client = mlflow.MlflowClient(in_store["uri"])
    before = len(client.search_model_versions(f"name = '{NAME}'"))
    with pytest.raises(PipelineError, match=reason):
        register.main(["--alias", alias])
    assert len(client.search_model_versions(f"name = '{NAME}'")) == before
