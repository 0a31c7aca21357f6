"""Files where painter-id keeps a folder (an output, MLflow's artifacts, Keras' weights cache): one line naming it.

The data folder itself: tests/pipeline/test_bad_input.py, through ``python -m``.
"""

from __future__ import annotations

import pytest

from painter_id.core.errors import PipelineError
from testkit.project import setup_frozen, setup_project, stage_main


@pytest.mark.parametrize("folder, stages", [
    ("metrics", ("features", "train")), ("models", ("features", "train")), ("data/features", ("features",)),
    ("mlartifacts", ("features", "train")),
])
def test_a_file_where_a_folder_belongs_is_one_line_saying_what_to_move(tmp_path, resized_dataset, monkeypatch,
                                                                       folder, stages):
    setup_project(tmp_path, monkeypatch, {"train": {"epochs": 1}})
    (tmp_path / folder).write_text("someone's notes", encoding="utf-8")

    with pytest.raises(PipelineError) as caught:
        stage_main(*stages)
    assert str(caught.value) == (f"{tmp_path / folder} is a file where painter-id keeps a folder; "
                                 "move it away (or delete it) and run again")
    assert (tmp_path / folder).read_text(encoding="utf-8") == "someone's notes"  # nothing of the user's is lost


def test_a_file_as_the_keras_weights_cache_is_named_before_any_download(tmp_path, resized_dataset, monkeypatch):
    setup_frozen(tmp_path, monkeypatch, {"model": {"weights": "imagenet"}})
    (tmp_path / "keras").mkdir()
    (tmp_path / "keras" / "models").write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(PipelineError, match=rf"^{tmp_path / 'keras' / 'models'} is a file where painter-id keeps a folder;"):
        stage_main("features")
