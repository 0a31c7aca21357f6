"""``params.yaml`` and the params reference (``docs/params.md``), generated from the declared params.

Every param is declared once, in :mod:`painter_id.core.params`, with its default, meaning and
allowed values; which stage reads it comes from ``dvc.yaml``. ``python -m painter_id.cli.reference``
writes both files from those; tests/cli/test_reference.py fails when either differs from
what it would write, so neither can drift from the code.
"""

from __future__ import annotations

import argparse
import dataclasses
import textwrap
import typing
from pathlib import Path
from typing import Any

import yaml

from painter_id.core.params import SECTIONS, interval
from painter_id.core.paths import PARAMS_FILE

REFERENCE = Path("docs/params.md")
PIPELINE = Path("dvc.yaml")
COMMENT_COLUMN = 28
WIDTH = 112
HEADER = """\
# Every knob that can change a result, one section per stage (and two that cannot: runtime, mlflow).
# `dvc exp run -S section.key=value` changes one for an experiment; DVC reruns only the stages that
# read it. Generated from painter_id/core/params.py by `python -m painter_id.cli.reference`; the
# params reference with every allowed value is docs/params.md.
"""


def readers(pipeline: dict) -> dict[str, list[str]]:
    """``{"model.l2": ["train"], ...}``: for every param (or whole section), the stages that depend on it."""
    found: dict[str, list[str]] = {}
    for stage, spec in pipeline["stages"].items():
        for entry in spec.get("params", []):
            found.setdefault(entry, []).append(stage)
    return found


def read_by(section: str, key: str, pipeline: dict) -> list[str]:
    """The stages whose result ``section.key`` can change (DVC reruns them when it does)."""
    table = readers(pipeline)
    return sorted({*table.get(section, []), *table.get(f"{section}.{key}", [])},
                  key=list(pipeline["stages"]).index)


def allowed(spec: dataclasses.Field) -> str:
    """The allowed values of a param, in words: its choices or its range."""
    meta = spec.metadata
    if meta["choices"]:
        return " | ".join(map(str, meta["choices"]))
    return interval(meta) or ""


def yaml_value(value: Any) -> str:
    """A default as params.yaml writes it (``null``, ``[]``, ``[1.0]``, ``0.001``)."""
    if isinstance(value, tuple):
        value = list(value)
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


def _comment_lines(first: str, comment: str) -> list[str]:
    # A no-break space holds "[0, 1)" and "a | b" together on one line; written back as a space.
    lines = [line.replace("\u00a0", " ") for line in textwrap.wrap(comment, WIDTH - COMMENT_COLUMN - 2)] or [""]
    pad = " " * COMMENT_COLUMN
    head = first.ljust(COMMENT_COLUMN - 1) + " " if len(first) < COMMENT_COLUMN else first + "  "
    return [f"{head}# {lines[0]}", *(f"{pad}# {line}" for line in lines[1:])]


def params_yaml(pipeline: dict) -> str:
    """The text of ``params.yaml``: every section and default, each with its meaning and allowed values."""
    out = [HEADER]
    for section, cls in SECTIONS.items():
        stages = sorted({s for key in (f.name for f in dataclasses.fields(cls)) for s in read_by(section, key, pipeline)},
                        key=list(pipeline["stages"]).index)
        note = f" (read by {', '.join(stages)})" if stages else ""
        out += _comment_lines(f"{section}:", f"{cls.__doc__.split(':', 1)[1].strip().rstrip('.')}{note}")
        for spec in dataclasses.fields(cls):
            limits = allowed(spec).replace(" ", "\u00a0")
            if limits:
                limits = f"; one of {limits}" if spec.metadata["choices"] else f"; in {limits}"
            comment = spec.metadata["help"] + limits
            out += _comment_lines(f"  {spec.name}: {yaml_value(spec.default)}", comment)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        return "list of numbers" if typing.get_args(tp)[0] is float else "list of names"
    names = {int: "integer", float: "number", str: "text", bool: "true/false", type(None): "null"}
    args = typing.get_args(tp) or (tp,)
    return " or ".join(names.get(arg, str(arg)) for arg in args)


def params_markdown(pipeline: dict) -> str:
    """The params reference: one table per section, a row per param."""
    out = ["# Params reference", "",
           "Every param of `params.yaml`: its type, default, allowed values, and the stages DVC reruns when it "
           "changes. Generated from the code that validates them (`python -m painter_id.cli.reference`); a "
           "value outside the allowed ones stops the stage with one line naming the param.", ""]
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        out += [f"## `{section}`", "", cls.__doc__.split(":", 1)[1].strip(), "",
                "| param | type | default | allowed | reruns | meaning |", "|---|---|---|---|---|---|"]
        for spec in dataclasses.fields(cls):
            stages = ", ".join(read_by(section, spec.name, pipeline)) or "nothing"
            out.append(f"| `{section}.{spec.name}` | {_type_name(hints[spec.name])} | `{yaml_value(spec.default)}` | "
                       f"{allowed(spec).replace('|', 'or') or 'any'} | {stages} | {spec.metadata['help']} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def expected(root: Path = Path(".")) -> dict[Path, str]:
    """What the two generated files must hold."""
    pipeline = yaml.safe_load((root / PIPELINE).read_text(encoding="utf-8"))
    return {root / PARAMS_FILE: params_yaml(pipeline), root / REFERENCE: params_markdown(pipeline)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m painter_id.cli.reference",
                                     description="Write params.yaml and docs/params.md from the declared params.")
    parser.parse_args()
    for path, text in expected().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
