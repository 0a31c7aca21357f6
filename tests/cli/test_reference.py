"""params.yaml and docs/params.md are what the declared params generate: neither can drift from the code."""

from __future__ import annotations

import yaml

from painter_id.cli import reference
from painter_id.core.params import SECTIONS, Params, load_all
from testkit.project import REPO_ROOT


def test_params_yaml_and_the_reference_are_generated_from_the_declarations():
    for path, text in reference.expected(REPO_ROOT).items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(REPO_ROOT)} differs from the declared params: run `python -m painter_id.cli.reference`")


def test_the_reference_names_every_param_its_default_and_the_stages_it_reruns():
    text = (REPO_ROOT / reference.REFERENCE).read_text(encoding="utf-8")
    flat = Params().flat()
    for name in flat:
        assert f"| `{name}` |" in text, name
    assert "| `model.l2` | number | `0.0` | [0, inf) | features, train |" not in text  # l2 never reruns features
    assert "| `model.l2` | number | `0.0` | [0, inf) | train |" in text
    assert "| `runtime.workers` | integer | `0` | [0, inf) | nothing |" in text


def test_the_generated_params_yaml_loads_as_the_defaults():
    raw = yaml.safe_load(reference.params_yaml(yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())))
    assert set(raw) == set(SECTIONS)
    assert load_all(REPO_ROOT / "params.yaml") == Params()
