"""Artist names in the figures: drawn as written, whatever characters a folder name holds."""

from __future__ import annotations

import matplotlib.text
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from painter_id.evaluation import plots

# What mathtext and TeX treat specially, mixed with ordinary letters.
SPECIAL = "$\\^_{}%&#~"
NAMES = st.text(alphabet=st.sampled_from(list(SPECIAL) + list("abcXYZ é")), min_size=1, max_size=30)


def drawn_texts(monkeypatch) -> list:
    """Every text of every figure ``plots`` saves: ``(string, parsed as math?)``."""
    seen = []
    save = plots._save

    def recording_save(fig, path):
        seen.extend((t.get_text(), t.get_parse_math()) for t in fig.findobj(matplotlib.text.Text) if t.get_text())
        save(fig, path)

    monkeypatch.setattr(plots, "_save", recording_save)
    return seen


def test_a_tex_command_as_a_name_is_drawn_literally(tmp_path, monkeypatch):
    seen = drawn_texts(monkeypatch)
    names = ["$\\undefinedcommand{x}$", "$x^{$", "Ann_Bob"]
    y = np.array([0, 1, 2, 0])
    plots.plot_confusion(y, np.array([1, 2, 0, 0]), names, tmp_path / "c.png")
    probs = np.array([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1], [0.9, 0.05, 0.05]])
    plots.plot_misclassified(np.zeros((4, 8, 8, 3), np.uint8), y, probs, names, 4, tmp_path / "m.png")
    drawn = {text for text, _ in seen}
    assert set(names) <= drawn  # the confusion matrix's tick labels, as written
    assert any("$\\undefinedcommand{x}$" in text for text in drawn if text.startswith("actual: "))
    assert not any(math for _, math in seen)
    for name in ("c.png", "m.png"):
        with Image.open(tmp_path / name) as image:
            assert image.width > 100


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(NAMES, min_size=2, max_size=4, unique=True))
def test_any_names_make_both_figures(tmp_path, names):
    n = len(names)
    y = np.arange(n)
    probs = np.full((n, n), 0.1 / n)
    probs[np.arange(n), (y + 1) % n] = 0.9  # every painting wrong, so every name is drawn in the gallery
    plots.plot_confusion(y, probs.argmax(axis=1), names, tmp_path / "c.png")
    plots.plot_misclassified(np.zeros((n, 8, 8, 3), np.uint8), y, probs, names, n, tmp_path / "m.png")
    for name in ("c.png", "m.png"):
        with Image.open(tmp_path / name) as image:
            image.verify()
