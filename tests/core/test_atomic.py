"""Atomic outputs: whole or not at all, the previous version kept on failure."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from painter_id.core.atomic import (
    atomic_dir,
    atomic_file,
    ensure_writable_dir,
    make_temp_dir,
    owned_folder,
    write_csv,
    write_json,
)
from painter_id.core.errors import PipelineError
from testkit.project import REPO_ROOT, run


def test_atomic_dir_replaces_only_on_success(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "temporary folder left behind"

    with atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("whole")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_file_keeps_previous_on_interrupt(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"accuracy": 0.5})
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(target) as handle:
            handle.write('{"accuracy": ')
            raise KeyboardInterrupt
    assert target.read_text().startswith('{\n  "accuracy": 0.5')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    write_csv(tmp_path / "t.csv", ["a", "b"], [[1, 2]])
    assert (tmp_path / "t.csv").read_text() == "a,b\n1,2\n"


@pytest.mark.parametrize("what, make", [("a file", lambda p: p.write_text("x")),
                                        ("a broken link", lambda p: p.symlink_to(p.parent / "gone"))])
def test_output_under_a_file_is_reported_before_work(tmp_path, what, make):
    make(tmp_path / "data")
    expected = f"{tmp_path / 'data'} is {what} where painter-id keeps a folder; move it away (or delete it) and run again"
    for check in (lambda: ensure_writable_dir(tmp_path / "data" / "raw" / "manifest.csv"),
                  lambda: make_temp_dir(tmp_path / "data" / "raw", ".download-"),
                  lambda: owned_folder(tmp_path / "data")):
        with pytest.raises(PipelineError) as caught:
            check()
        assert str(caught.value) == expected
    assert owned_folder(tmp_path / "elsewhere" / "new") == tmp_path / "elsewhere" / "new"  # missing is fine


def test_relative_user_paths_resolve_from_the_main_workspace(tmp_path, monkeypatch):
    from painter_id.core.workspace import user_path

    copy = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    # In a queued experiment's copy, ../shared must mean the folder beside the user's repo.
    assert user_path("../shared/x", env={"DVC_ROOT": str(tmp_path / "repo")}) == tmp_path / "repo" / "../shared/x"
    assert user_path("../shared/x", env={}) == tmp_path / "repo" / "../shared/x"
    assert user_path("/abs/x", env={}) == Path("/abs/x")


SIGNAL_AT_CREATION = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from painter_id.core import atomic, stop

    stop.install()  # as every stage does
    create = getattr(atomic, sys.argv[1])

    def create_then_signal(*args):
        made = create(*args)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C the moment the temporary exists
        return made

    setattr(atomic, sys.argv[1], create_then_signal)
    writer = atomic.atomic_dir if sys.argv[1] == "make_temp_dir" else atomic.atomic_path
    try:
        with writer(Path("out") / "result.bin"):
            Path("body-ran").touch()
    except KeyboardInterrupt:
        print("interrupted")
""")


@pytest.mark.parametrize("create", ["make_temp_dir", "_temp_file"])
def test_a_signal_the_moment_a_temporary_appears_leaves_nothing_behind(tmp_path, create):
    (tmp_path / "demo.py").write_text(SIGNAL_AT_CREATION, encoding="utf-8")
    proc = run([sys.executable, "demo.py", create], tmp_path, check=False, env={"PYTHONPATH": str(REPO_ROOT)})

    assert proc.stdout.strip() == "interrupted", proc.stderr
    assert not (tmp_path / "body-ran").exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["demo.py", "out"], proc.stderr
