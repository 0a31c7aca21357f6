"""Property-based hostile input (Hypothesis): any name, any param value, any bytes as an image.

The examples are generated, so each run tries cases nobody listed; counts stay modest to
keep the suite fast. Failing examples are shrunk and printed by Hypothesis.
"""

from __future__ import annotations

import csv
import io
import math
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from painter_id import compare, spreadsheet
from painter_id.atomic import write_csv
from painter_id.errors import PipelineError
from painter_id.images import ImageRejected, load_square
from painter_id.inputs import read_csv
from painter_id.layout import Layout
from painter_id.params import SECTIONS, parse_section
from stages.download import MAX_NAME_BYTES, artist_name, find_candidates, folder_name, name_problem

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Names as Linux gives them: any bytes but "/" and NUL, decoded as Python does (surrogateescape).
raw_names = st.binary(min_size=1, max_size=60).map(lambda b: b.replace(b"/", b"_").replace(b"\0", b"_")).filter(
    lambda b: b not in (b".", b".."))
names = st.one_of(st.text(max_size=60), raw_names.map(os.fsdecode))


@FAST
@given(names)
def test_any_name_is_rejected_or_becomes_a_safe_folder_and_csv_cell(tmp_path, name):
    if name_problem(name):
        return
    artist = artist_name(name)
    if not artist:
        return
    assert artist == artist.strip() and "\n" not in artist and "\r" not in artist and "\0" not in artist
    folder = folder_name(artist)
    assert "/" not in folder and not folder.startswith(".") and folder not in ("", ".", "..")
    if len(folder.encode("utf-8")) > MAX_NAME_BYTES:
        return
    # Round trip through the pipeline's CSV writer and reader: the name comes back unchanged.
    write_csv(tmp_path / "t.csv", ["path", "artist"], [[f"images/{folder}/x.jpg", artist]])
    assert read_csv(tmp_path / "t.csv", ["path", "artist"], "hint")[0]["artist"] == artist
    cell = spreadsheet.safe_cell(artist)
    assert cell in (artist, "'" + artist) and not cell.startswith(spreadsheet.FORMULA_START)


@FAST
@given(st.lists(raw_names, min_size=1, max_size=4, unique=True), st.lists(raw_names, min_size=1, max_size=3))
def test_real_folders_with_any_byte_names_give_candidates_that_can_be_written(tmp_path_factory, folders, files):
    root = tmp_path_factory.mktemp("names")
    images = os.fsencode(root / "images")
    os.mkdir(images)
    for folder in folders:
        os.mkdir(images + b"/" + folder)
        for file in files:
            with open(images + b"/" + folder + b"/" + file + b".jpg", "wb") as handle:
                handle.write(b"x")
    layout = Layout(root, tuple(sorted(p for p in (root / "images").iterdir() if not p.name.startswith("."))), None)
    candidates = find_candidates(layout, [])
    visible = [f for f in folders if not f.startswith(b".")]
    assert len(candidates) == len(visible) * len({f for f in files if not f.startswith(b".")})
    for cand in candidates:
        cand.rel.encode("utf-8")  # rejected.csv must take every path, kept or not
        if cand.problem is None:
            out = cand.out.encode("utf-8")
            assert out.startswith(b"images/") and b"/../" not in out and out.count(b"/") == 2


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**62) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(SECTIONS)), st.data())
def test_any_param_value_is_accepted_or_one_short_pipeline_error(section, data):
    keys = [f.name for f in SECTIONS[section].__dataclass_fields__.values()]
    raw = data.draw(st.dictionaries(st.sampled_from(keys) | st.text(max_size=8), values, max_size=4))
    try:
        params = parse_section(section, raw)
    except PipelineError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 400
    else:  # what is accepted is finite and fits 64 bits, as TensorFlow, Keras and urllib need
        for value in vars(params).values():
            if isinstance(value, (int, float)):
                assert math.isfinite(value) and abs(value) < 2**63


MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"II*\x00", b"MM\x00*", b"BM", b"RIFF\x00\x00\x00\x00WEBP"]


@FAST
@given(st.sampled_from(MAGIC), st.binary(max_size=400))
def test_any_bytes_are_an_image_or_image_rejected(tmp_path, magic, body):
    path = tmp_path / "x.jpg"
    path.write_bytes(magic + body)
    try:
        array = load_square(path, 16, "pad", max_pixels=1_000_000)
    except ImageRejected as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert array.shape == (16, 16, 3) and array.dtype == np.uint8


@FAST
@given(st.lists(st.lists(st.one_of(st.text(max_size=10), st.floats(allow_nan=True)), min_size=10, max_size=10),
                max_size=3))
def test_compare_csv_never_starts_a_text_cell_with_a_formula(rows):
    out = io.StringIO()
    # Columns that read a row's cells, as compare's columns read a run's params and metrics.
    cols = [compare.Column(f"c{i}", lambda row, i=i: row[i]) for i in range(10)]
    compare.write_csv(rows, cols, out)

    for row in list(csv.reader(io.StringIO(out.getvalue())))[1:]:
        for cell in row:
            if cell.startswith(spreadsheet.FORMULA_START):
                float(cell)  # only a negative number may start with "-"
