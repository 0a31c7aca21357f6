"""Each private API in painter_id.core.compat still exists and does its job on the installed versions.

An upgrade of Keras, MLflow or Python that moves one of them fails here, naming it, instead of
somewhere inside a training.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import mlflow
import pytest

from painter_id.core import compat
from testkit.project import REPO_ROOT


def test_versions_are_the_ones_the_private_apis_were_checked_against():
    assert importlib.metadata.version("keras").startswith(compat.TESTED_WITH["keras"])
    assert importlib.metadata.version("mlflow").startswith(compat.TESTED_WITH["mlflow"])


def test_all_layers_walks_nested_models_in_order_self_first():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="inner_dense")], name="inner")
    inputs = keras.Input((4,))
    outer = keras.Model(inputs, keras.layers.Dense(2, name="top")(inner(inputs)), name="outer")
    names = [layer.name for layer in compat.all_layers(outer)]
    assert names[0] == "outer" and "inner" in names and "inner_dense" in names and "top" in names


def test_mlflow_tracking_uri_is_set_only_inside_the_block(tmp_path):
    before = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    with compat.mlflow_tracking_uri(uri):
        assert mlflow.get_tracking_uri() == uri
    assert mlflow.get_tracking_uri() == before
    with compat.mlflow_tracking_uri(None):
        assert mlflow.get_tracking_uri() == before


def test_exit_stops_an_idle_thread_pool_runs_exit_handlers_and_keeps_the_code(tmp_path):
    # An idle ThreadPoolExecutor worker used to keep a finished stage alive for ever.
    script = textwrap.dedent("""
        import atexit, sys
        from concurrent.futures import ThreadPoolExecutor
        from pathlib import Path
        from painter_id.core.compat import exit_now, finish_threads
        pool = ThreadPoolExecutor(2)
        pool.submit(lambda: None).result()
        atexit.register(lambda: Path("atexit.txt").write_text("ran"))
        print("left:", finish_threads(5), flush=True)
        exit_now(3)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.strip() == "left: []" and (tmp_path / "atexit.txt").read_text() == "ran"


def test_scale_learning_rates_scales_the_step_of_the_named_variables_under_adam():
    # Adam's first step is the rate times the gradient's sign: scaled gradients would not show.
    scaled, plain = keras.Variable([1.0, -1.0]), keras.Variable([1.0, -1.0])
    optimizer = keras.optimizers.Adam(0.1)
    compat.scale_learning_rates(optimizer, [scaled], 0.01)
    optimizer.apply([keras.ops.convert_to_tensor([3.0, -5.0])] * 2, [scaled, plain])
    assert keras.ops.convert_to_numpy(plain) == pytest.approx([0.9, -0.9], abs=1e-4)
    assert keras.ops.convert_to_numpy(scaled) == pytest.approx([0.999, -0.999], abs=1e-5)


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def test_log_pyfunc_model_keeps_the_pins_skips_mlflow_s_scan_of_every_package_and_puts_the_check_back(
        tmp_path, monkeypatch):
    import mlflow.utils.environment as environment
    from mlflow.utils import requirements_utils

    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)  # not scanned yet in this process
    check = environment.warn_dependency_requirement_mismatches
    pin = f"mlflow=={importlib.metadata.version('mlflow')}"
    with compat.mlflow_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}"):
        with mlflow.start_run():
            info = compat.log_pyfunc_model(name="echo", python_model=Echo(), pip_requirements=[pin])
        assert requirements_utils._MODULES_TO_PACKAGES is None
        assert environment.warn_dependency_requirement_mismatches is check
        requirements = Path(mlflow.pyfunc.get_model_dependencies(info.model_uri))
    assert pin in requirements.read_text(encoding="utf-8").split()


def test_dvc_reads_yaml_with_ruamel_s_c_parser_and_the_same_values():
    from ruamel.yaml import YAML

    text = "a: 1e-4\nb: on\nc: 010\nd: [x, 2]\ne: ~\n"
    fast = YAML(typ="safe")  # what DVC's parse_yaml makes
    assert fast.Parser.__name__ == "CParser"  # ruamel.yaml.clib, a dependency for speed only
    assert fast.load(text) == YAML(typ="safe", pure=True).load(text) == {"a": 1e-4, "b": "on", "c": 10,
                                                                         "d": ["x", 2], "e": None}
