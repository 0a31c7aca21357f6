"""The model registry: a run's MLflow Model promoted to a version, tagged, with its alias moved."""

from __future__ import annotations

import mlflow
import pytest

from painter_id.cli import register
from painter_id.core.errors import PipelineError
from painter_id.tracking import registry
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
    before = registry_state(client)
    for name in (NAME, "fresh-name"):  # an existing model, and one that would be created
        with pytest.raises(PipelineError, match=reason):
            register.main(["--alias", alias, "--name", name])
    assert registry_state(client) == before


def registry_state(client: mlflow.MlflowClient) -> dict:
    """Every registered model with its versions and aliases."""
    return {model.name: (sorted(v.version for v in client.search_model_versions(f"name = '{model.name}'")),
                         dict(model.aliases))
            for model in client.search_registered_models()}


def test_a_registration_failing_midway_is_undone(in_store, monkeypatch):
    client = mlflow.MlflowClient(in_store["uri"])
    before = registry_state(client)

    def refuse(self, name, alias, version):
        raise mlflow.exceptions.MlflowException(f"alias {alias!r} refused by the server")

    # The real store creates the model and its version; only the last write fails, as a server's can.
    monkeypatch.setattr(mlflow.MlflowClient, "set_registered_model_alias", refuse)
    for name in ("brand-new", NAME):
        with pytest.raises(mlflow.exceptions.MlflowException, match="refused by the server"):
            registry.register(client, client.get_run(in_store["run"]["run_id"]), name, "champion")
    assert registry_state(client) == before
    monkeypatch.undo()

    version, created = registry.register(client, client.get_run(in_store["run"]["run_id"]), "O'Brien's model", "gold")
    assert created and client.get_model_version_by_alias("O'Brien's model", "gold").version == version.version
