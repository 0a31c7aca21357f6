"""The console commands: each answers --help from its arguments alone, in plain words.

They read their arguments before importing TensorFlow or MLflow (seconds each on 2 cores), so
--help and a mistyped flag answer at once; benchmarks/ measures how fast.
"""

from __future__ import annotations

import re
import sys
import textwrap

import pytest
import tomllib

from testkit.project import REPO_ROOT, run

SCRIPTS = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
# Docstring markup that means nothing on a terminal.
MARKUP = re.compile(r"``|:(mod|func|class|data):`")


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_help_needs_neither_tensorflow_nor_mlflow_and_shows_no_markup(name, tmp_path):
    module, function = SCRIPTS[name].split(":")
    script = textwrap.dedent(f"""
        import importlib, sys
        sys.argv = [{name!r}, "--help"]
        try:
            getattr(importlib.import_module({module!r}), "parse_args")()
        except SystemExit as stop:
            assert stop.code == 0, stop.code
        heavy = sorted(m for m in ("tensorflow", "keras", "mlflow") if m in sys.modules)
        print("HEAVY", heavy)
    """)
    proc = run([sys.executable, "-c", script], tmp_path, env={"PYTHONPATH": str(REPO_ROOT)})
    help_text, _, last = proc.stdout.rpartition("HEAVY ")
    assert last.strip() == "[]", f"{name} --help imported {last.strip()}"
    assert help_text.startswith(f"usage: {name}") and not MARKUP.search(help_text), help_text
    assert getattr(__import__(module, fromlist=[function]), function)  # the entry point exists
