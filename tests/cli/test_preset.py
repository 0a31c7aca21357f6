"""``painter-preset``: a named params file run as one ``dvc exp run``, checked before DVC starts."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from painter_id.cli.preset import dvc_command, preset_names, read_preset
from painter_id.core.errors import PipelineError
from testkit.project import REPO_ROOT, TINY, dvc, make_project, run

PRESETS = REPO_ROOT / "presets"


@pytest.mark.parametrize("name", preset_names(PRESETS))
def test_every_shipped_preset_names_real_params_with_values_the_stages_accept(name):
    preset = read_preset(name, PRESETS, REPO_ROOT / "params.yaml")
    assert preset and all(values for values in preset.values())
    command = dvc_command(name, folder=PRESETS)
    assert command[:3] == ["dvc", "exp", "run"] and command.count("-S") == sum(map(len, preset.values()))


def test_the_best_preset_exists_and_leaves_the_paintings_to_the_user():
    assert "best" in preset_names(PRESETS)
    assert "data" not in read_preset("best", PRESETS, REPO_ROOT / "params.yaml")


@pytest.mark.parametrize("text, expected", [
    ("model:\n  frozen_layer: 3\n", "unknown key model.frozen_layer; did you mean model.frozen_layers?"),
    ("model:\n  dropout: 1.5\n", "model.dropout"),
    ("modle:\n  dropout: 0.1\n", "unknown section 'modle'"),
    ("- model\n", "must be a mapping of sections"),
    ("model: 3\n", "must be a mapping of sections"),
])
def test_a_broken_preset_is_one_line_naming_its_file(tmp_path, text, expected):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "mine.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(PipelineError) as caught:
        read_preset("mine", tmp_path / "presets", REPO_ROOT / "params.yaml")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "presets" / "mine.yaml")) and expected in message


def test_an_unknown_preset_lists_the_known_ones(tmp_path):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "quick.yaml").write_text("train:\n  epochs: 1\n", encoding="utf-8")
    with pytest.raises(PipelineError, match=r"no preset 'best' in .*presets/ \(presets: quick\)"):
        read_preset("best", tmp_path / "presets", REPO_ROOT / "params.yaml")


def test_the_console_command_exits_2_with_one_line_for_an_unknown_preset(tmp_path):
    proc = run([sys.executable, "-m", "painter_id.cli.preset", "nope"], REPO_ROOT, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "no preset 'nope'" in proc.stderr and "best" in proc.stderr


def test_a_queued_preset_holds_its_params_lists_included_and_the_users_last(tmp_path):
    project = make_project(tmp_path / "painter-id", TINY)
    preset = {"model": {"dropout": 0.5, "scales": [1.0, 1.5], "pooled_layers": []}, "train": {"epochs": 1}}
    (project / "presets" / "mine.yaml").write_text("# mine: a test preset\n" + yaml.safe_dump(preset), encoding="utf-8")
    proc = run([sys.executable, "-m", "painter_id.cli.preset", "mine", "--queue", "-n", "mine-1",
                "-S", "train.epochs=2"], project, env={"PYTHONPATH": str(project)})
    assert proc.stdout.startswith("dvc exp run --queue --name mine-1 -S ")
    shown = json.loads(dvc(project, "exp", "show", "--json").stdout)
    queued = [exp for commit in shown for exp in (commit.get("experiments") or [])
              if exp.get("name") == "mine-1"]
    assert queued, shown
    params = queued[0]["revs"][0]["data"]["params"]["params.yaml"]["data"]
    assert params["model"]["dropout"] == 0.5 and params["model"]["scales"] == [1.0, 1.5]
    assert params["model"]["pooled_layers"] == [] and params["train"]["epochs"] == 2
