"""params.yaml parsing: typed values, one-line errors that name the param."""

from __future__ import annotations

import pytest

from painter_id.errors import PipelineError
from painter_id.params import SECTIONS, Params, load_all, load_section, parse_section
from tests.conftest import REPO_ROOT, run_stage, write_params


def test_project_params_file_is_valid_and_complete():
    params = load_all(REPO_ROOT / "params.yaml")
    flat = params.flat()
    assert flat["model.backbone"] == "simple_cnn"
    assert flat["split.test_size"] == pytest.approx(0.2)
    # every dataclass field appears in params.yaml, so users see every knob
    import yaml

    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    for section, cls in SECTIONS.items():
        fields = set(cls.__dataclass_fields__)
        assert set(raw[section]) == fields, f"params.yaml [{section}] differs from {cls.__name__}"


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
        ("data", {"source": "path", "path": "painter_id/synthetic.py"}, "data.path is empty (or still painter_id/synthetic.py"),
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
        ("model", {"gram_layers": ["conv_pw_5_relu", "conv_pw_5_relu"]}, "model.gram_layers ['conv_pw_5_relu', 'conv_pw_5_relu'] names a layer twice"),
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
    from painter_id.errors import first_line

    assert first_line(ValueError("bad weights\nsecond line")) == "bad weights"
    assert first_line(OSError()) == "OSError"
