"""The pipeline's MLflow runs side by side: which runs, which columns, in which order (``painter-compare``).

Besides the test metrics and the best epoch of each training (with its loss and accuracy),
it shows every param whose value differs among the runs listed, as ``dvc exp show
--only-changed`` does; ``--all-params`` shows them all.

Reads the same store the train stage writes (``mlflow.tracking_uri`` in params.yaml,
``$MLFLOW_TRACKING_URI`` overriding), so it needs no server and no browser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from painter_id.core.errors import PipelineError, first_line
from painter_id.core.urls import redact_text

if TYPE_CHECKING:
    from mlflow.entities import Run


@dataclass(frozen=True)
class Column:
    """One column of the comparison: its header and how to read it from a run."""

    name: str
    read: Callable[[Run], object]
    numeric: bool = False
    integer: bool = False


def _param(key: str, *older: str) -> Callable[[Run], object]:
    """The run's param ``key``, else the first of its ``older`` names that the run has."""
    return lambda run: next((run.data.params[k] for k in (key, *older) if k in run.data.params), "")


def _metric(key: str) -> Callable[[Run], object]:
    return lambda run: run.data.metrics.get(key, math.nan)


RUN = Column("run", lambda run: run.info.run_name or run.info.run_id[:8])
STATUS = Column("status", lambda run: run.info.status)
# The headline (the test split's figures, or the cross-validated means without one), what it was
# scored on and the paintings trained on, then the kept epoch of the training and its metrics.
METRICS = [
    Column("accuracy", _metric("accuracy"), numeric=True),
    Column("macro_f1", _metric("macro_f1"), numeric=True),
    Column("top5_accuracy", _metric("top5_accuracy"), numeric=True),
    Column("scored_on", lambda run: run.data.tags.get("scored_on", "")),
    Column("dataset", lambda run: (run.inputs.dataset_inputs[0].dataset.name
                                   if run.inputs and run.inputs.dataset_inputs else "")),
    Column("best_epoch", _metric("train.best_epoch"), numeric=True, integer=True),
    Column("best_loss", _metric("train.best_loss"), numeric=True),
    Column("best_accuracy", _metric("train.best_accuracy"), numeric=True),
    Column("best_val_loss", _metric("train.best_val_loss"), numeric=True),
    Column("best_val_accuracy", _metric("train.best_val_accuracy"), numeric=True),
    Column("train_seconds", _metric("train.seconds"), numeric=True),
]
SORTABLE = [column.name for column in METRICS if column.numeric]


def param_keys(runs: Sequence[Run], all_params: bool = False) -> list[str]:
    """The params whose value differs among ``runs`` (a param a run lacks counts as differing), or all of them."""
    keys = sorted(set().union(*(run.data.params for run in runs))) if runs else []
    if all_params:
        return keys
    return [key for key in keys if len({run.data.params.get(key) for run in runs}) > 1]


def columns(runs: Sequence[Run], all_params: bool = False) -> list[Column]:
    """The run's name, the params that differ (or all), the metrics, the status."""
    return [RUN, *(Column(key, _param(key)) for key in param_keys(runs, all_params)), *METRICS, STATUS]


def parse_filters(filters: Sequence[str]) -> dict[str, str]:
    """Turn ``["model.backbone=MobileNet"]`` into ``{"model.backbone": "MobileNet"}``."""
    parsed = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PipelineError(f"--where {item!r}: use PARAM=VALUE, e.g. --where model.backbone=MobileNet")
        parsed[key.strip()] = value.strip()
    return parsed


def fetch_runs(uri: str, experiment: str) -> list[Run]:
    """Every active run of ``experiment`` in the store at ``uri`` (an empty list if it has none)."""
    # Imported here: the command's --help and argument errors must not wait for MLflow.
    import mlflow

    from painter_id.tracking import store

    db = store.sqlite_path(uri)
    if db is not None and not db.exists():
        raise PipelineError(f"no MLflow store at {db}; run `dvc repro` first, or pass --tracking-uri")
    try:
        # An unreachable server must fail within seconds, as train does, not after minutes of retries.
        with store.quick_http():
            client = mlflow.MlflowClient(uri)
            found = client.get_experiment_by_name(experiment)
            if found is None:
                return []
            return list(client.search_runs([found.experiment_id], max_results=50_000))
    except Exception as exc:  # MLflow raises many types for a missing or broken store
        shown = redact_text(uri)
        problem = store.store_problem(uri, exc)
        if problem:
            raise PipelineError(f"cannot read MLflow store {shown}: {problem}") from None
        hint = "; check --tracking-uri" + (" (a damaged store: restore it from a backup)" if db is not None else "")
        raise PipelineError(f"cannot read MLflow store {shown}: {redact_text(first_line(exc))[:300]}{hint}") from None


def select(runs: Sequence[Run], where: dict[str, str], sort: str, ascending: bool = False,
           limit: Optional[int] = None) -> list[Run]:
    """The runs matching ``where``, sorted by the metric column ``sort`` (missing values last)."""
    kept = [run for run in runs if all(run.data.params.get(k) == v for k, v in where.items())]
    read = next(column.read for column in METRICS if column.name == sort)

    def sort_key(run: Run) -> tuple:
        value = read(run)
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        return (missing, 0.0 if missing else (value if ascending else -value))

    kept.sort(key=sort_key)
    return kept[:limit] if limit else kept


def rows_of(runs: Sequence[Run], cols: Sequence[Column]) -> list[list]:
    """One row of ``cols`` per run."""
    return [[column.read(run) for column in cols] for run in runs]


def _cell(value: object, integer: bool = False) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if integer:
            return str(int(value))
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def render_table(runs: Sequence[Run], cols: Sequence[Column]) -> str:
    """A plain aligned text table with a header line."""
    header = [column.name for column in cols]
    cells = [header] + [[_cell(v, c.integer) for v, c in zip(row, cols)] for row in rows_of(runs, cols)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = []
    for line in cells:
        lines.append("  ".join(c.rjust(w) if column.numeric else c.ljust(w)
                               for c, w, column in zip(line, widths, cols)).rstrip())
    return "\n".join(lines)
