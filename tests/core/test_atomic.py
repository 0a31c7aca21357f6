"""Atomic outputs: whole or not at all, the previous version kept on failure."""

from __future__ import annotations

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
