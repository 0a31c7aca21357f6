"""painter-compare: the params that differ among the runs it lists, the best epoch, --all-params."""

from __future__ import annotations

import csv
import io
import socket
import time

import mlflow
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from painter_id.cli import compare, spreadsheet
from painter_id.core.errors import PipelineError
from testkit.project import write_params

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

SHARED = {"model.backbone": "MobileNet", "resize.size": "448", "train.epochs": "300"}
RUNS = [  # name, params that vary, test accuracy, best epoch
    ("plain", {"model.l2": "0.0", "evaluate.tta": "none"}, 0.72, 40),
    ("l2", {"model.l2": "0.003", "evaluate.tta": "none"}, 0.77, 120),
    ("l2-flip", {"model.l2": "0.003", "evaluate.tta": "flip"}, 0.76, 120),
]


@pytest.fixture(scope="module")
def store_root(tmp_path_factory):
    """A real SQLite store with three finished runs of the pipeline's experiment, and a params.yaml."""
    root = tmp_path_factory.mktemp("compare")
    write_params(root, {})
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.create_experiment("painter-identification")
    for name, params, accuracy, best_epoch in RUNS:
        run_id = client.create_run(experiment, run_name=name).info.run_id
        for key, value in {**SHARED, **params}.items():
            client.log_param(run_id, key, value)
        for key, value in {"accuracy": accuracy, "train.best_epoch": best_epoch, "train.best_loss": 0.5,
                           "train.best_accuracy": 0.9, "train.seconds": 11.9}.items():
            client.log_metric(run_id, key, value)
        client.set_tag(run_id, "scored_on", "80 test paintings")
        client.set_terminated(run_id)
    return root


@pytest.fixture
def store(store_root, monkeypatch):
    monkeypatch.chdir(store_root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store_root / 'mlflow.db'}")


def compare_csv(capsys, *args: str) -> list[dict[str, str]]:
    compare.main(["--format", "csv", *args])
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


def test_only_the_params_that_differ_are_shown_with_the_best_epoch(store, capsys):
    rows = compare_csv(capsys)

    assert [row["run"] for row in rows] == ["l2", "l2-flip", "plain"]  # best accuracy first
    params = [key for key in rows[0] if "." in key]
    assert params == ["evaluate.tta", "model.l2"]
    assert [(row["model.l2"], row["evaluate.tta"]) for row in rows] == [("0.003", "none"), ("0.003", "flip"),
                                                                          ("0.0", "none")]
    assert [row["best_epoch"] for row in rows] == ["120.0", "120.0", "40.0"]
    assert rows[0]["best_loss"] == "0.5" and rows[0]["best_accuracy"] == "0.9"
    assert rows[0]["scored_on"] == "80 test paintings"  # what the headline accuracy was scored on


def test_listing_fewer_runs_narrows_what_differs_and_all_params_shows_everything(store, capsys):
    rows = compare_csv(capsys, "--where", "evaluate.tta=none")
    assert [key for key in rows[0] if "." in key] == ["model.l2"]  # tta no longer differs

    rows = compare_csv(capsys, "--all-params", "--limit", "1")
    assert [key for key in rows[0] if "." in key] == sorted({**SHARED, **RUNS[0][1]})
    assert rows[0]["model.backbone"] == "MobileNet"

    compare.main([])
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["run", "evaluate.tta", "model.l2", "accuracy"]
    assert table[1].split()[:4] == ["l2", "none", "0.003", "0.7700"] and " 120 " in table[1]


def test_compare_on_a_damaged_store_or_a_dead_server_is_one_line_within_seconds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, {})
    (tmp_path / "mlflow.db").write_bytes(b"SQLite format 3\0" + bytes(range(256)) * 8)
    with pytest.raises(PipelineError, match=r"cannot read MLflow store sqlite:///.*mlflow\.db: .*not a database"):
        compare.main(["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(PipelineError, match=rf"cannot read MLflow store http://127\.0\.0\.1:{port}"):
        compare.main(["--tracking-uri", f"http://127.0.0.1:{port}"])
    assert time.monotonic() - start < 30  # MLflow's default retries take minutes


@pytest.mark.parametrize("limit", ["-1", "0", "x"])
def test_compare_limit_must_be_one_or_more(limit, capsys):
    with pytest.raises(SystemExit) as info:
        compare.parse_args(["--limit", limit])
    assert info.value.code == 2 and "--limit" in capsys.readouterr().err


def test_compare_csv_neutralises_formulas(tmp_path):
    out = io.StringIO()
    row = ["=1+2", "@x", "-y", "", "", 0.5, float("nan"), -0.25, 1.0, "FINISHED"]
    cols = [compare.Column(f"c{i}", lambda cells, i=i: cells[i]) for i in range(len(row))]
    compare.write_csv([row], cols, out)
    row = out.getvalue().splitlines()[1]
    assert row == "'=1+2,'@x,'-y,,,0.5,,-0.25,1.0,FINISHED"


@FAST
@given(st.lists(st.lists(st.one_of(st.text(max_size=10), st.floats(allow_nan=True)), min_size=10, max_size=10),
                max_size=3))
def test_compare_csv_never_starts_a_text_cell_with_a_formula(rows):
    out = io.StringIO()
    # Columns that read a row's cells, as compare's columns read a run's params and metrics.
    cols = [compare.Column(f"c{i}", lambda row, i=i: row[i]) for i in range(10)]
    compare.write_csv(rows, cols, out)

    for row in list(csv.reader(io.StringIO(out.getvalue())))[1:]:
        for cell in row:
            if cell.startswith(spreadsheet.FORMULA_START):
                float(cell)  # only a negative number may start with "-"
