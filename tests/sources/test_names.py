"""Artist and file names from a source, on generated names: rejected with a reason, or a safe folder and CSV cell."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from painter_id.cli import spreadsheet
from painter_id.core.atomic import write_csv
from painter_id.data.inputs import read_csv
from painter_id.sources.ingest import find_candidates
from painter_id.sources.layout import Layout
from painter_id.sources.names import MAX_NAME_BYTES, artist_name, folder_name, name_problem

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
