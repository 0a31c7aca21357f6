"""The predict command: top-k CSV for real paintings, the resize stage's code path, error rows."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from painter_id.cli import predict as predict_command
from painter_id.core.errors import PipelineError
from painter_id.core.parallel import Workers
from painter_id.core.params import ResizeParams
from painter_id.data.images import sha256_file
from painter_id.data.resized import resize_to_npy
from painter_id.model import model_files
from painter_id.serving import predict
from testkit.images import make_resized_dataset
from testkit.project import REPO_ROOT, run, setup_project, stage_main, write_params

ARTISTS = ("Titian", "Rembrandt")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A project whose tiny simple_cnn (Ann, Bob, Cy at 32 px) was trained on images resized with ``crop``."""
    root = tmp_path_factory.mktemp("trained")
    make_resized_dataset(root, mode="crop")  # data/resized/format.json says crop: train records it for predict
    with pytest.MonkeyPatch.context() as monkeypatch:
        setup_project(root, monkeypatch, {"train": {"epochs": 1}})
        stage_main("features", "train")
    return root


@pytest.fixture
def paintings(tmp_path, shared_sample) -> Path:
    """3 real paintings each of Titian and Rembrandt, a wide crop of one (PNG), a truncated JPEG and a text file."""
    folder = tmp_path / "paintings"
    for artist in ARTISTS:
        (folder / artist).mkdir(parents=True)
        for src in sorted((shared_sample / "images" / artist).iterdir())[:3]:
            shutil.copy(src, folder / artist / src.name)
    first = sorted((folder / "Titian").iterdir())[0]
    with Image.open(first) as image:
        image.crop((0, 0, image.width, image.height * 2 // 3)).save(folder / "wide.png")
    (folder / "broken.jpg").write_bytes(first.read_bytes()[:2000])
    (folder / "notes.jpg").write_text("not a painting, just text\n", encoding="utf-8")
    return folder


def parse(text: str) -> tuple[list[str], dict[str, list[dict[str, str]]]]:
    """The CSV's header and its rows grouped by path, in order of appearance."""
    reader = csv.DictReader(io.StringIO(text))
    grouped: dict[str, list[dict[str, str]]] = {}
    for row in reader:
        grouped.setdefault(row["path"], []).append(row)
    return reader.fieldnames, grouped


def resize_like_stage(paths: list[str], tmp: Path, mode: str) -> np.ndarray:
    """The 32 px array the resize stage makes of ``paths`` (relative to the cwd)."""
    dest = tmp / f"resized-{mode}.npy"
    resize_to_npy([(p, sha256_file(p)) for p in paths], dest, ResizeParams(image_size=32, mode=mode), Workers(1), "reference")
    return np.load(dest)


def model_probs(model_path: Path, paths: list[str], tmp: Path, mode: str) -> np.ndarray:
    """The model's probabilities on the arrays the resize stage makes of ``paths``."""
    return model_files.load_model(model_path).predict(resize_like_stage(paths, tmp, mode), verbose=0)


@pytest.mark.slow
def test_predict_command_ranks_artists_as_the_model_does_on_resized_arrays(trained, paintings, tmp_path,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)  # the reference arrays read the same relative paths as the command
    model_path = trained / "models" / "model.keras"
    labels = json.loads((trained / "models" / "labels.json").read_text())
    cmd = [sys.executable, "-m", "painter_id.cli.predict", "paintings", "--model", str(model_path), "--top-k", "2"]

    proc = run(cmd, tmp_path, env={"PYTHONPATH": str(REPO_ROOT)})

    header, rows = parse(proc.stdout)
    assert header == ["path", "rank", "artist", "probability"]
    good = sorted(str(p.relative_to(tmp_path)) for p in paintings.rglob("*") if p.suffix in (".jpg", ".png")
                  and p.name not in ("broken.jpg", "notes.jpg"))
    assert len(good) == 7 and list(rows) == sorted(good + ["paintings/broken.jpg", "paintings/notes.jpg"])
    for name, reason in (("broken.jpg", "ERROR: corrupt or truncated"), ("notes.jpg", "ERROR: not an image")):
        [row] = rows[f"paintings/{name}"]
        assert row["rank"] == "0" and row["artist"].startswith(reason) and row["probability"] == ""

    expected = model_probs(model_path, good, tmp_path, "crop")
    for path, reference in zip(good, expected):
        ranked = rows[path]
        probs = [float(row["probability"]) for row in ranked]
        assert [row["rank"] for row in ranked] == ["1", "2"]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-5
        assert all(row["artist"] in labels for row in ranked) and len({row["artist"] for row in ranked}) == 2
        assert ranked[0]["artist"] == labels[int(reference.argmax())]
        # Same decoding, resizing (models/preprocessing.json says crop) and model: same numbers.
        for row in ranked:
            assert float(row["probability"]) == pytest.approx(reference[labels.index(row["artist"])], abs=1e-5)

    # The resize mode matters for a non-square painting: pad would have given other numbers.
    wide = good.index("paintings/wide.png")
    padded = model_probs(model_path, ["paintings/wide.png"], tmp_path, "pad")[0]
    assert np.abs(padded - expected[wide]).max() > 1e-4


def test_top_k_is_clamped_and_flip_averages_the_mirror_image(trained, paintings, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    model_path = trained / "models" / "model.keras"
    image = "paintings/Rembrandt/" + sorted(p.name for p in (paintings / "Rembrandt").iterdir())[0]

    predict_command.main([image, "--model", str(model_path), "--top-k", "10", "--tta", "flip"])

    _, rows = parse(capsys.readouterr().out)
    assert [row["rank"] for row in rows[image]] == ["1", "2", "3"]  # the model knows 3 artists
    assert sum(float(row["probability"]) for row in rows[image]) == pytest.approx(1.0, abs=1e-5)
    model = model_files.load_model(model_path)
    labels = model_files.read_labels(trained / "models" / "labels.json")
    array = resize_like_stage([image], tmp_path, "crop")
    both = model.predict(np.concatenate([array, array[:, :, ::-1]]), verbose=0)
    for row in rows[image]:
        assert float(row["probability"]) == pytest.approx(both[:, labels.index(row["artist"])].mean(), abs=1e-5)


def test_missing_model_and_mismatched_labels_are_one_line_errors(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match="model.keras: not found; run `dvc repro train`"):
        predict_command.main(["x.jpg", "--model", str(tmp_path / "models" / "model.keras")])
    other = tmp_path / "labels.json"
    other.write_text(json.dumps(["Ann", "Bob"]), encoding="utf-8")
    with pytest.raises(PipelineError, match="has 3 classes but .*labels.json lists 2"):
        predict_command.main(["x.jpg", "--model", str(trained / "models" / "model.keras"), "--labels", str(other)])


def test_resize_mode_comes_from_training_else_params_else_pad(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model_path = tmp_path / "models" / "model.keras"
    model_path.parent.mkdir()
    assert predict.resize_mode(model_path, 32) == "pad"
    write_params(tmp_path, {"resize": {"mode": "stretch"}})
    assert predict.resize_mode(model_path, 32) == "stretch"
    (model_path.parent / "preprocessing.json").write_text(json.dumps({"size": 32, "mode": "crop"}))
    assert predict.resize_mode(model_path, 32) == "crop"
    with pytest.raises(PipelineError, match="says 32 px but .* takes 64 px"):
        predict.resize_mode(model_path, 64)


def test_folders_are_searched_recursively_skipping_hidden_and_non_image_files(tmp_path):
    for name in ("b/z.png", "b/a/y.JPG", "a.jpg", ".cache/x.jpg", "b/.x.jpg", "b/readme.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")

    found = predict.find_images([str(tmp_path / "b"), str(tmp_path / "a.jpg"), str(tmp_path / "missing.png")])

    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["b/a/y.JPG", "b/z.png", "a.jpg", "missing.png"]


def test_a_path_that_does_not_exist_is_an_error_row_and_a_failure(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    image = tmp_path / "real.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(image)
    with pytest.raises(PipelineError, match=r"nope\.jpg: no such file or folder \(1 of the paths named\)"):
        predict_command.main([str(image), "nope.jpg", "--model", str(trained / "models" / "model.keras")])
    header, rows = parse(capsys.readouterr().out)
    assert rows[str(image)][0]["rank"] == "1"  # the other images are still predicted
    assert rows["nope.jpg"][0]["artist"].startswith("ERROR: unreadable")


def test_names_a_spreadsheet_would_run_are_written_as_text(trained, tmp_path):
    model = model_files.load_model(trained / "models" / "model.keras")
    labels = ["=HYPERLINK(\"http://x\")", "+1", "@SUM(A1)"]
    image = tmp_path / "-2.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(image)
    out = io.StringIO()
    predict_command.predict_files([Path("-2.png"), image], predict.Predictor(model, labels, "pad", top_k=3), out)
    cells = [cell for row in csv.reader(io.StringIO(out.getvalue())) for cell in row]
    assert {"'=HYPERLINK(\"http://x\")", "'+1", "'@SUM(A1)", "'-2.png"} <= set(cells)
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells)
