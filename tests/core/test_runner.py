"""The runner every stage goes through: exit codes, and an exit that still finishes what a normal one would."""

from __future__ import annotations

import sys
import textwrap

import pytest

from testkit.project import REPO_ROOT, run

STAGE = textwrap.dedent("""
    import atexit, sys, tempfile, threading, time
    from pathlib import Path
    from painter_id.core.errors import PipelineError
    from painter_id.core.runner import run_stage

    def main():
        # What a normal exit finishes: exit handlers, a temporary folder left to its finalizer,
        # a worker thread still writing, buffered output without a newline.
        atexit.register(lambda: Path("atexit.txt").write_text("ran"))
        global folder
        folder = tempfile.TemporaryDirectory(dir=".")
        Path("folder.txt").write_text(folder.name)
        threading.Thread(target=lambda: (time.sleep(0.5), Path("thread.txt").write_text("done"))).start()
        sys.stdout.write("unterminated")
        if sys.argv[1] == "fail":
            raise PipelineError("params.yaml: train.epochs is -2; use 1 or more")

    run_stage("demo", main)
""")


@pytest.mark.parametrize("outcome, code", [("ok", 0), ("fail", 2)])
def test_a_stage_exit_keeps_its_code_and_finishes_what_a_normal_exit_would(tmp_path, outcome, code):
    (tmp_path / "demo.py").write_text(STAGE, encoding="utf-8")
    proc = run([sys.executable, "demo.py", outcome], tmp_path, check=False, env={"PYTHONPATH": str(REPO_ROOT)})

    assert proc.returncode == code, proc.stderr
    assert proc.stdout == "unterminated"
    assert (tmp_path / "atexit.txt").read_text() == "ran" and (tmp_path / "thread.txt").read_text() == "done"
    assert not (tmp_path / (tmp_path / "folder.txt").read_text()).exists()  # the temporary folder was removed
    if code:
        assert proc.stderr.strip().splitlines()[-1] == "error: demo: params.yaml: train.epochs is -2; use 1 or more"
