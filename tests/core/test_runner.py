"""The runner every stage goes through: exit codes, and an exit that still finishes what a normal one would."""

from __future__ import annotations

import sys
import textwrap

import pytest

from painter_id.core import runner
from painter_id.core.limits import env_seconds
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


STUCK = textwrap.dedent("""
    import threading
    from painter_id.core.runner import run_stage

    def main():
        # A thread a library started and never ends (an upload waiting on a dead server, say).
        threading.Thread(target=threading.Event().wait, name="stuck-upload").start()

    run_stage("demo", main)
""")


def test_a_finished_stage_ends_after_the_exit_wait_whatever_threads_remain(tmp_path):
    (tmp_path / "demo.py").write_text(STUCK, encoding="utf-8")
    env = {"PYTHONPATH": str(REPO_ROOT), "PAINTER_ID_EXIT_WAIT_SECONDS": "0.5"}
    # Without the bound the process would wait for ever; the timeout only keeps a failure from hanging the suite.
    proc = run([sys.executable, "demo.py"], tmp_path, check=False, env=env, timeout=120)

    assert proc.returncode == 0, proc.stderr
    assert "after 0.5 s at exit, ended with the process: stuck-upload" in proc.stderr
    assert "PAINTER_ID_EXIT_WAIT_SECONDS sets how long" in proc.stderr


@pytest.mark.parametrize("setting, seconds", [("", 60.0), ("0", 0.0), ("2.5", 2.5), ("soon", 60.0), ("-1", 60.0),
                                              ("inf", 60.0), ("nan", 60.0)])
def test_wait_bounds_are_read_from_the_environment(monkeypatch, caplog, setting, seconds):
    monkeypatch.setenv("PAINTER_ID_EXIT_WAIT_SECONDS", setting)
    monkeypatch.setenv("PAINTER_ID_LOCK_WAIT_SECONDS", setting)
    assert runner.exit_wait() == seconds
    assert env_seconds("PAINTER_ID_LOCK_WAIT_SECONDS", 60.0) == seconds
    warned = "is not a number of seconds" in caplog.text
    assert warned == (setting not in ("", "0", "2.5"))
