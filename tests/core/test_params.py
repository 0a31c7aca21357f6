"""params.yaml parsing: typed values, one-line errors that name the param."""

from __future__ import annotations

import dataclasses
import math

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from painter_id.core.errors import PipelineError
from painter_id.core.params import RENAMED, RESIZE_MODES, SECTIONS, TTA_MODES, Params, load_all, load_section, parse_section
from testkit.checks import assert_one_line_error
from testkit.project import REPO_ROOT, run_stage, write_params

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**62) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def test_params_yaml_holds_every_default_value_for_value():
    # The dataclasses are the one home of the defaults; params.yaml must say the same, key for key.
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    for section, cls in SECTIONS.items():
        assert set(raw[section]) == set(cls.__dataclass_fields__), f"params.yaml [{section}] differs from {cls.__name__}"
    assert load_all(REPO_ROOT / "params.yaml") == Params()


@pytest.mark.parametrize("section, old, new", [(n.split(".")[0], n.split(".")[1], new) for n, new in RENAMED.items()])
def test_a_renamed_param_is_one_line_naming_its_new_name(section, old, new):
    with pytest.raises(PipelineError) as info:
        parse_section(section, {old: 1})
    assert str(info.value).startswith(f"params.yaml: {section}.{old} was renamed; use {new} (")


def test_every_param_is_declared_with_a_meaning_and_its_options_once():
    for section, cls in SECTIONS.items():
        for spec in dataclasses.fields(cls):
            assert spec.metadata.get("help"), f"{section}.{spec.name} has no description"
    # The option lists the code acts on are the ones validation checks.
    from painter_id.data import images
    from painter_id.model import tta

    assert images.RESIZE_MODES is RESIZE_MODES and tta.TTA_MODES is TTA_MODES


@pytest.mark.parametrize(
    "section, raw, expected",
    [
        ("model", {"frozen_layer": 600}, "did you mean model.frozen_layers?"),
        ("split", {"test_size": 1.5}, "split.test_size is 1.5"),
        ("split", {"test_size": -0.1}, "split.test_size is -0.1"),
        ("train", {"epochs": -1}, "train.epochs is -1"),
        ("train", {"epochs": "ten"}, "must be an integer"),
        ("train", {"batch_size": 2.5}, "train.batch_size"),
        ("model", {"frozen_layers": "half"}, "'all'"),
        ("data", {"source": "ftp"}, "synthetic, kaggle, url, path"),
        ("data", {"source": "path"}, "data.path is empty"),
        ("data", {"source": "path", "path": "unused.txt"}, "data.path is empty (or still unused.txt, its placeholder)"),
        ("data", {"source": "url", "url": "ftp://x"}, "http(s)"),
        ("data", {"source": "url", "url": "https://art:${ART_TOKEN}@host/a.zip"},
         "data.url holds ${ART_TOKEN}, which DVC cannot expand"),
        ("resize", {"mode": "squash"}, "pad, crop, stretch"),
        ("oversample", {"strategy": "smote"}, "min_count, match_largest, none"),
        ("model", {"pooled_layers": "conv_pw_11_relu"}, "model.pooled_layers is 'conv_pw_11_relu'; it must be a list"),
        ("model", {"pooled_layers": ["a", 3]}, "must be a list of strings"),
        ("model", {"pooled_layers": ["a", "a"]}, "names a layer twice"),
        ("model", {"l2": -0.1}, "model.l2 is -0.1"),
        ("model", {"pooling": "max"}, "model.pooling is 'max'; use one of avg, mean_std"),
        ("model", {"gram_layers": ["conv_pw_5_relu", "conv_pw_5_relu"]},
         "model.gram_layers ['conv_pw_5_relu', 'conv_pw_5_relu'] names a layer twice"),
        ("model", {"gram_layers": "conv_pw_5_relu"}, "model.gram_layers is 'conv_pw_5_relu'; it must be a list"),
        ("model", {"gram_dim": 0}, "model.gram_dim is 0; it must lie in [1, 256]"),
        ("model", {"gram_dim": 512}, "model.gram_dim is 512"),
        ("model", {"scales": [1.0, 1.0]}, "model.scales is [1.0, 1.0]; list each scale once"),
        ("model", {"scales": []}, "model.scales is []"),
        ("model", {"scales": [1, "big"]}, "model.scales is 'big'; it must be a number"),
        ("model", {"scales": 1.5}, "model.scales is 1.5; it must be a list of numbers"),
        ("model", {"scales": [1.0, 0]}, "model.scales is 0.0; it must lie in (0, 4]"),
    ],
)
def test_bad_values_raise_one_line_errors_naming_the_param(section, raw, expected):
    with pytest.raises(PipelineError) as info:
        parse_section(section, raw)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_types_are_coerced_and_defaults_filled():
    model = parse_section("model", {"frozen_layers": "all", "dropout": 0})
    assert model.frozen_layers == "all" and model.dropout == 0.0 and isinstance(model.dropout, float)
    assert parse_section("model", {"frozen_layers": 600}).frozen_layers == 600
    assert parse_section("data", {"top_n": None}).top_n is None
    assert Params().flat()["train.optimizer"] == "adam"
    pooled = parse_section("model", {"pooled_layers": ["conv_pw_5_relu", "conv_pw_11_relu"], "l2": 0})
    assert pooled.pooled_layers == ("conv_pw_5_relu", "conv_pw_11_relu") and pooled.l2 == 0.0
    assert parse_section("model", {"pooled_layers": None}).pooled_layers == ()
    # MLflow shows the list as params.yaml writes it
    assert Params(model=pooled).flat()["model.pooled_layers"] == "[conv_pw_5_relu, conv_pw_11_relu]"
    assert Params().flat()["model.pooled_layers"] == "[]"
    assert parse_section("model", {"scales": [1, 1.5]}).scales == (1.0, 1.5)
    assert Params().flat()["model.scales"] == "[1.0]"


def test_unknown_section_and_broken_yaml(tmp_path):
    (tmp_path / "params.yaml").write_text("modle:\n  backbone: x\n", encoding="utf-8")
    with pytest.raises(PipelineError, match="did you mean 'model'"):
        load_section("model", tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("model: [unclosed\n", encoding="utf-8")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_section("model", tmp_path / "params.yaml")


def test_stage_reports_a_param_typo_in_one_line_without_traceback(tmp_path):
    write_params(tmp_path, {"split": {"tset_size": 0.3}})
    proc = run_stage("split", tmp_path, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == "error: split: params.yaml: unknown key split.tset_size; did you mean split.test_size?"
    assert "Traceback" not in proc.stderr


def test_first_line_of_an_error_never_fails_on_an_empty_message():
    from painter_id.core.errors import first_line

    assert first_line(ValueError("bad weights\nsecond line")) == "bad weights"
    assert first_line(OSError()) == "OSError"


def alias_bomb(levels: int = 6) -> str:
    """A "billion laughs" params.yaml: 9^levels strings in model.pooled_layers from a few hundred bytes."""
    anchors = ["&l0 [x, x, x, x, x, x, x, x, x]"]
    anchors += [f"&l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, levels + 1)]
    return f"model:\n  pooled_layers: [{', '.join(anchors)}]\n"


PARAMS_FILES = {
    "nan": ("split:\n  test_size: .nan\n", "split.test_size is nan; it must be a finite number"),
    "infinity": ("data:\n  timeout: .inf\n", "data.timeout is inf; it must be a finite number"),
    "huge-int": ("train:\n  epochs: 100000000000000000000000\n", "train.epochs is 1000"),
    "duplicate": ("train:\n  epochs: 1\n  epochs: 2\n", "key 'epochs' appears twice (line 3)"),
    "top-list": ("- train\n- split\n", "must be a mapping of sections"),
    "empty-list": ("[]\n", "must be a mapping of sections"),
    "section-list": ("train: []\n", "section 'train' must be a mapping"),
    "recursive": ("train: &t\n  epochs: *t\n", "once its aliases (*name) are expanded"),
    "alias-bomb": (alias_bomb(), "once its aliases (*name) are expanded"),  # was a message of megabytes
}


@pytest.mark.parametrize("case", list(PARAMS_FILES))
def test_broken_params_file_is_one_short_line(tmp_path, case):
    text, fragment = PARAMS_FILES[case]
    (tmp_path / "params.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(PipelineError) as info:
        load_all(tmp_path / "params.yaml")
    assert fragment in str(info.value) and "\n" not in str(info.value) and len(str(info.value)) < 300


def test_alias_bomb_latin1_and_a_folder_as_params_through_the_real_stage(tmp_path):
    cases = {
        "bomb": (lambda p: p.write_text(alias_bomb(), encoding="utf-8"), "once its aliases (*name) are expanded"),
        "latin1": (lambda p: p.write_bytes("split:\n  seed: 1  # Dürer\n".encode("latin-1")), "not UTF-8 text"),
        "folder": (lambda p: p.mkdir(), "cannot be read (Is a directory)"),
    }
    for case, (make, fragment) in cases.items():
        root = tmp_path / case
        root.mkdir()
        make(root / "params.yaml")
        proc = run_stage("split", root, check=False)
        line = assert_one_line_error(proc, "split", "params.yaml", fragment)
        assert len(line) < 300, case


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


@pytest.mark.parametrize("key, value, message", [
    ("precision", "float16", "train.precision is 'float16'; use one of float32, mixed_bfloat16, mixed_float16"),
    ("strategy", "tpu", "train.strategy is 'tpu'; use one of auto, mirrored, multi_worker"),
    ("feature_cache", "on", "train.feature_cache was removed: the features stage computes"),
    ("jit_compile", "yes", "train.jit_compile is 'yes'; it must be true or false"),
])
def test_performance_params_are_validated(key, value, message):
    with pytest.raises(PipelineError, match=message.replace("(", r"\(")):
        parse_section("train", {key: value})
