"""The resize stage: every image as size x size RGB, in csv order, the same with any worker count."""

from __future__ import annotations

import csv
import shutil
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from painter_id.core.errors import PipelineError
from painter_id.data.images import load_square, sha256_file
from testkit.images import make_raw_dataset
from testkit.project import run_stage, stage_main, write_params

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def rows(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_split(root: Path, name: str, images: list[tuple[str, str, Image.Image | bytes, dict]]) -> None:
    """Write ``images`` (path, artist, image or raw bytes, save options) and the csv listing them."""
    csv_path = root / ("data/oversampled/train.csv" if name == "train" else "data/split/test.csv")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "artist", "sha256", "source"] if name == "train" else ["path", "artist", "sha256"])
        for path, artist, image, options in images:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(image, bytes):
                (root / path).write_bytes(image)
            else:
                image.save(root / path, **options)
            source = ["data/raw/images/x.jpg" if "aug" in path else ""] if name == "train" else []
            writer.writerow([path, artist, sha256_file(root / path), *source])


def solid(colour, size=(24, 24), mode="RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def bands(size=(40, 20)) -> Image.Image:
    """A wide image: green | red | blue, the red band exactly the central square."""
    arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    arr[:, :10], arr[:, 10:30], arr[:, 30:] = GREEN, RED, BLUE
    return Image.fromarray(arr)


def resize(root: Path, monkeypatch, workers: int = 1, **params) -> dict[str, np.ndarray]:
    """Run the stage in-process in ``root`` with ``workers`` processes; return the two arrays."""
    monkeypatch.chdir(root)
    write_params(root, {"resize": params, "runtime": {"workers": workers}})
    stage_main("resize")
    return {name: np.load(root / f"data/resized/{name}.npy") for name in ("train", "test")}


@pytest.fixture
def coloured(tmp_path) -> Path:
    """Six solid training images (one an augmented copy) and three test images, each a different colour."""
    colours = [(10 * i, 255 - 20 * i, 40 * i % 256) for i in range(9)]
    train = [(f"data/raw/images/A/a{i}.jpg" if i != 4 else "data/oversampled/images/A/a0_aug1.jpg",
              "A" if i % 2 else "B", solid(colours[i]), {"format": "PNG"}) for i in range(6)]
    test = [(f"data/raw/images/T/t{i}.png", "C", solid(colours[6 + i]), {}) for i in range(3)]
    write_split(tmp_path, "train", train)
    write_split(tmp_path, "test", test)
    return tmp_path


def test_shapes_dtype_and_row_order(coloured, monkeypatch):
    arrays = resize(coloured, monkeypatch, image_size=16)
    assert arrays["train"].shape == (6, 16, 16, 3) and arrays["test"].shape == (3, 16, 16, 3)
    assert arrays["train"].dtype == np.uint8 and arrays["test"].dtype == np.uint8
    for name, source_csv in (("train", "data/oversampled/train.csv"), ("test", "data/split/test.csv")):
        out = rows(coloured / f"data/resized/{name}.csv")
        source = rows(coloured / source_csv)
        assert list(out[0]) == ["path", "artist", "source", "sha256"]
        assert [(r["path"], r["artist"], r.get("source", "")) for r in source] == [
            (r["path"], r["artist"], r["source"]) for r in out]
        for row, image in zip(out, arrays[name]):
            expected = Image.open(coloured / row["path"]).convert("RGB").getpixel((0, 0))
            assert np.abs(image.astype(int) - expected).max() <= 1, row["path"]
    assert [r["source"] for r in rows(coloured / "data/resized/train.csv")].count("data/raw/images/x.jpg") == 1
    assert all(r["source"] == "" for r in rows(coloured / "data/resized/test.csv"))


def test_pad_crop_and_stretch_differ_as_expected(tmp_path, monkeypatch):
    write_split(tmp_path, "train", [("data/raw/images/A/wide.png", "A", bands(), {})])
    write_split(tmp_path, "test", [("data/raw/images/A/wide2.png", "A", bands(), {})])
    pad = resize(tmp_path, monkeypatch, image_size=20, mode="pad")["train"][0].astype(int)
    crop = resize(tmp_path, monkeypatch, image_size=20, mode="crop")["train"][0].astype(int)
    stretch = resize(tmp_path, monkeypatch, image_size=20, mode="stretch")["train"][0].astype(int)

    # pad: the whole painting in the middle rows, black bars at top and bottom.
    assert pad[:4].max() == 0 and pad[-4:].max() == 0
    assert np.abs(pad[10, 0] - GREEN).max() <= 2 and np.abs(pad[10, -1] - BLUE).max() <= 2
    # crop: only the central (red) square, no bars.
    assert np.abs(crop - RED).max() <= 2
    # stretch: everything, squeezed, no bars.
    assert np.abs(stretch[0, 0] - GREEN).max() <= 2 and np.abs(stretch[-1, -1] - BLUE).max() <= 2
    assert np.abs(stretch[0, 10] - RED).max() <= 2


def exif_rotated() -> tuple[Image.Image, dict]:
    """A 40x20 landscape red JPEG whose EXIF says: rotate 90 degrees (orientation 6)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return solid(RED, (40, 20)), {"format": "JPEG", "exif": exif.tobytes(), "quality": 95}


def test_every_mode_becomes_rgb(tmp_path, monkeypatch):
    rgba = solid((0, 0, 255, 0), mode="RGBA")  # fully transparent: composited on white
    palette = solid(GREEN).convert("P")
    sixteen = Image.fromarray(np.full((24, 24), 65535, dtype=np.uint16))
    train = [
        ("data/raw/images/M/cmyk.jpg", "M", solid((0, 255, 255, 0), mode="CMYK"), {"quality": 95}),
        ("data/raw/images/M/gray.png", "M", solid(128, mode="L"), {}),
        ("data/raw/images/M/rgba.png", "M", rgba, {}),
        ("data/raw/images/M/palette.png", "M", palette, {}),
        ("data/raw/images/M/sixteen.png", "M", sixteen, {}),
        ("data/raw/images/M/rotated.jpg", "M", *exif_rotated()),
    ]
    write_split(tmp_path, "train", train)
    write_split(tmp_path, "test", [("data/raw/images/M/plain.png", "M", solid(RED), {})])
    assert Image.open(tmp_path / "data/raw/images/M/sixteen.png").mode.startswith("I")
    images = resize(tmp_path, monkeypatch, image_size=20, mode="pad")["train"].astype(int)

    expected = [RED, (128, 128, 128), (255, 255, 255), GREEN, (255, 255, 255)]
    for image, colour, (path, *_rest) in zip(images, expected, train):
        assert np.abs(image - colour).max() <= 8, path
    rotated = images[5]
    # Upright, the painting is portrait: the pad bars are on the left and right, not top and bottom.
    assert rotated[:, :4].max() == 0 and rotated[:, -4:].max() == 0
    assert np.abs(rotated[:, 6:14] - RED).max() <= 8


def test_two_workers_write_the_same_arrays_as_one(tmp_path, monkeypatch):
    make_raw_dataset(tmp_path, {"A": 20, "B": 9}, size=(50, 30))
    paths = [f"data/raw/{r['path']}" for r in rows(tmp_path / "data/raw/manifest.csv")]
    write_split(tmp_path, "train", [(p, "A", Image.open(tmp_path / p), {"quality": 90}) for p in paths[:22]])
    write_split(tmp_path, "test", [(p, "B", Image.open(tmp_path / p), {"quality": 90}) for p in paths[22:]])
    one = resize(tmp_path, monkeypatch, image_size=24, workers=1)
    one_csv = (tmp_path / "data/resized/train.csv").read_bytes()
    two = resize(tmp_path, monkeypatch, image_size=24, workers=2)
    assert np.array_equal(one["train"], two["train"]) and np.array_equal(one["test"], two["test"])
    assert (tmp_path / "data/resized/train.csv").read_bytes() == one_csv
    assert one["train"].std() > 10  # real pictures, not an all-zero array


def test_undecodable_image_names_the_file_and_keeps_previous_output(coloured, monkeypatch):
    resize(coloured, monkeypatch, image_size=16)
    before = (coloured / "data/resized/train.npy").read_bytes()
    (coloured / "data/raw/images/T/t1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    relist_hashes(coloured / "data/split/test.csv", coloured)  # as if split had listed the bad file
    with pytest.raises(PipelineError, match=r"data/raw/images/T/t1\.png: cannot be decoded"):
        resize(coloured, monkeypatch, image_size=20)
    assert (coloured / "data/resized/train.npy").read_bytes() == before
    assert not list((coloured / "data").glob(".resized.tmp-*"))


def relist_hashes(table: Path, root: Path) -> None:
    """Rewrite the sha256 column of ``table`` from the files it lists, as the stage that wrote it would."""
    listed = rows(table)
    with open(table, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(listed[0]))
        writer.writeheader()
        writer.writerows({**row, "sha256": sha256_file(root / row["path"])} for row in listed)


def test_an_image_changed_after_it_was_listed_is_a_one_line_error(coloured, monkeypatch):
    # resize depends on the tables (their hashes), not on the data/raw folder: it checks the bytes it reads.
    resize(coloured, monkeypatch, image_size=16)
    before = (coloured / "data/resized/test.npy").read_bytes()
    solid((1, 2, 3)).save(coloured / "data/raw/images/T/t2.png")
    with pytest.raises(PipelineError, match=r"^data/raw/images/T/t2\.png: changed since .* run `dvc repro`"):
        resize(coloured, monkeypatch, image_size=20)
    assert (coloured / "data/resized/test.npy").read_bytes() == before
    relist_hashes(coloured / "data/split/test.csv", coloured)
    assert resize(coloured, monkeypatch, image_size=16)["test"][2].mean() < 3  # the new, near-black image


def raw_from_sample(sample: Path, root: Path, artists: dict[str, int]) -> None:
    """Build data/raw as download does from the first images of a few artists of the real sample."""
    raw = root / "data/raw"
    manifest = []
    for folder, count in artists.items():
        artist = unicodedata.normalize("NFC", folder.replace("_", " "))
        for source in sorted((sample / "images" / folder).iterdir())[:count]:
            dest = raw / "images" / artist.replace(" ", "_") / f"{artist.replace(' ', '_')}_{len(manifest) + 1}.jpg"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
            with Image.open(dest) as img:
                manifest.append([dest.relative_to(raw).as_posix(), artist, sha256_file(dest), img.width, img.height, img.mode])
    with open(raw / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["path", "artist", "sha256", "width", "height", "mode"], *manifest])


def test_real_paintings_through_split_oversample_resize(shared_sample, tmp_path, monkeypatch):
    raw_from_sample(shared_sample, tmp_path, {"Albrecht_Durer": 8, "Rembrandt": 12, "Titian": 5})
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, {"oversample": {"min_count": 10}, "resize": {"image_size": 48, "mode": "crop"},
                            "runtime": {"workers": 1}})
    stage_main("split")
    stage_main("oversample")
    stage_main("resize")
    train = rows(tmp_path / "data/resized/train.csv")
    test = rows(tmp_path / "data/resized/test.csv")
    images = np.load(tmp_path / "data/resized/train.npy")
    assert images.shape == (len(train), 48, 48, 3) and len(train) >= 30
    assert {r["artist"] for r in train} == {"Albrecht Durer", "Rembrandt", "Titian"}
    for row, image in zip(train + test, np.concatenate([images, np.load(tmp_path / "data/resized/test.npy")])):
        assert np.array_equal(image, load_square(tmp_path / row["path"], 48, "crop")), row["path"]
        assert image.std() > 5, row["path"]


def test_three_stages_in_a_row_as_modules(raw_dataset, tmp_path):
    write_params(tmp_path, {"oversample": {"min_count": 12}, "resize": {"image_size": 32}, "runtime": {"workers": 2}})
    for stage in ("split", "oversample", "resize"):
        run_stage(stage, tmp_path)
    oversampled = rows(tmp_path / "data/oversampled/train.csv")
    split_test = rows(tmp_path / "data/split/test.csv")
    train, test = rows(tmp_path / "data/resized/train.csv"), rows(tmp_path / "data/resized/test.csv")
    assert [(r["path"], r["artist"], r["source"]) for r in oversampled] == [(r["path"], r["artist"], r["source"]) for r in train]
    assert [r["path"] for r in split_test] == [r["path"] for r in test]
    assert np.load(tmp_path / "data/resized/train.npy").shape == (len(train), 32, 32, 3)
    assert np.load(tmp_path / "data/resized/test.npy").shape == (len(test), 32, 32, 3)
    assert min(Counter(r["artist"] for r in train).values()) == 12


@pytest.mark.parametrize(
    "stage, message",
    [
        ("oversample", "data/split/train.csv: not found; run `dvc repro split`"),
        ("resize", "data/oversampled/train.csv: not found; run `dvc repro oversample`"),
    ],
)
def test_missing_input_exits_2_with_one_line(tmp_path, stage, message):
    write_params(tmp_path, {})
    proc = run_stage(stage, tmp_path, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "data").exists()
