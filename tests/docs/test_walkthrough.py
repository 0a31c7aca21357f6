"""The README's workflow, run as a new user runs it: a fresh clone on the defaults, every output checked.

The README's ``console user`` blocks are the card's commands (``dvc repro``, ``dvc exp run -S
model.frozen_layers=600``, ``dvc metrics diff``, ``dvc exp show --only-changed``). They run here,
in order, in a copy of the project holding what a clone holds (the shipped ``dvc.lock`` and
metrics included), and each output the README shows must be the one printed, numbers, ids,
experiment names and dates aside (:mod:`testkit.docs_script`).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from testkit import docs_script
from testkit.project import REPO_ROOT, make_project, run

README = REPO_ROOT / "README.md"
COMMANDS = docs_script.parse(README)
MONTHS = re.compile(r"\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\b")
CLOCK = re.compile(r"\b[AP]M\b")
EXPERIMENT = re.compile(r"Reproducing experiment '([\w-]+)'")
# `dvc metrics diff` prints its metrics files in the order of a Python set of their names
# (dvc.utils.diff.diff), which changes with each process's hash seed; rows within a file are sorted.
ROWS_IN_ANY_FILE_ORDER = {"dvc metrics diff"}


def anonymous(text: str, names: set[str]) -> str:
    """``text`` with experiment names, month names and AM/PM replaced: DVC draws a new name each run."""
    for name in names:
        text = text.replace(name, "EXPERIMENT")
    return CLOCK.sub("TIME", MONTHS.sub("MONTH", text))


def rows_sorted(lines: list[str]) -> list[str]:
    """A table's header, then its rows sorted: the same table whatever order its files came in."""
    lines = [line for line in lines if line.strip()]
    return lines[:1] + sorted(lines[1:])


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory) -> dict:
    """Run the README's ``console user`` blocks once, in a fresh copy of the project on its defaults."""
    home = tmp_path_factory.mktemp("home")
    project = make_project(home / "painter-id")
    # A clone holds the shipped baseline: its lock file and the metrics kept in git.
    shutil.copy2(REPO_ROOT / "dvc.lock", project / "dvc.lock")
    shutil.copytree(REPO_ROOT / "metrics", project / "metrics", dirs_exist_ok=True)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "baseline"], project)
    env = docs_script.base_environment(home, [Path(sys.executable).parent])
    env["COLUMNS"] = "160"  # a terminal's width: DVC fits its tables to it
    shell = docs_script.Terminal("user", project, env)
    done = docs_script.run_page([command for command in COMMANDS if command.terminal == "user"], {"user": shell})
    return {"project": project, "home": home, "done": done}


@pytest.mark.slow
def test_the_readme_shows_the_card_commands_in_order():
    texts = [command.text for command in COMMANDS if command.terminal == "user"]
    card = ["dvc repro", "dvc exp run -S model.frozen_layers=600", "dvc metrics diff"]
    assert [text for text in texts if text in card] == card, texts
    assert any(text.startswith("dvc exp show") for text in texts)


@pytest.mark.slow
def test_every_output_the_readme_shows_is_the_real_one(walkthrough):
    wrong = {}
    # The page's experiment and the one just run have different names, in every output that shows them.
    names = {name for ran in walkthrough["done"]
             for name in EXPERIMENT.findall(ran.output + "\n".join(ran.command.shown))}
    for ran in walkthrough["done"]:
        shown = [anonymous(line, names) for line in ran.command.shown]
        printed = anonymous(ran.output, names)
        if ran.command.text in ROWS_IN_ANY_FILE_ORDER:
            shown, printed = rows_sorted(shown), "\n".join(rows_sorted(printed.splitlines()))
        mismatch = docs_script.output_mismatch(shown, printed, walkthrough["home"])
        if mismatch:
            wrong[f"line {ran.command.line}: {ran.command.text}"] = mismatch
    assert not wrong, json.dumps(wrong, indent=1) + "\n\n" + docs_script.transcript(walkthrough["done"])[-30000:]


@pytest.mark.slow
def test_the_experiment_froze_600_layers_and_changed_the_results(walkthrough):
    project = walkthrough["project"]
    params = (project / "params.yaml").read_text(encoding="utf-8")
    assert re.search(r"^\s*frozen_layers: 600\b", params, flags=re.MULTILINE)
    diff = next(ran.output for ran in walkthrough["done"] if ran.command.text == "dvc metrics diff")
    assert "metrics/eval.json" in diff and "accuracy" in diff


@pytest.mark.slow
def test_mlflow_holds_the_baseline_run_and_the_experiments_run_with_fewer_trainable_params(walkthrough):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{walkthrough['project'] / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("painter-identification")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2 and {run.info.status for run in runs} == {"FINISHED"}
    by_frozen = {run.data.params["model.frozen_layers"]: run for run in runs}
    assert set(by_frozen) == {"0", "600"}
    exp_output = next(ran.output for ran in walkthrough["done"] if "frozen_layers=600" in ran.command.text)
    assert by_frozen["600"].info.run_name == EXPERIMENT.search(exp_output).group(1)
    assert int(by_frozen["600"].data.params["model.trainable_params"]) < int(by_frozen["0"].data.params["model.trainable_params"])


def test_a_fresh_clone_lacks_only_the_outputs_its_lock_file_names(tmp_path):
    project = make_project(tmp_path / "painter-id")
    shutil.copy2(REPO_ROOT / "dvc.lock", project / "dvc.lock")
    shutil.copytree(REPO_ROOT / "metrics", project / "metrics", dirs_exist_ok=True)
    status = json.loads(run([sys.executable, "-m", "dvc", "status", "--json"], project).stdout)
    # Outputs (and the deps that are other stages' outputs) are missing; nothing is modified.
    modified = [(stage, path, state) for stage, entries in status.items() if stage != "source"
                for entry in entries if isinstance(entry, dict) for changes in entry.values()
                for path, state in changes.items() if state not in ("deleted", "not in cache")]
    assert not modified and "train" in status, status


def test_a_metrics_table_matches_in_either_file_order_but_not_with_other_rows():
    shown = ["Path  Metric  HEAD  workspace  Change", "train.json  epochs_run  10  7  -3", "eval.json  accuracy  0.9  0.8  -0.1"]
    swapped = "Path  Metric  HEAD  workspace  Change\neval.json  accuracy  0.9  0.8  -0.1\ntrain.json  epochs_run  10  7  -3\n"
    assert docs_script.output_mismatch(rows_sorted(shown), "\n".join(rows_sorted(swapped.splitlines()))) is None
    other = swapped.replace("accuracy", "macro_f1")
    assert docs_script.output_mismatch(rows_sorted(shown), "\n".join(rows_sorted(other.splitlines()))) is not None
