"""Command ``painter-preset``: run a named, reviewable set of params as one ``dvc exp run``.

    painter-preset --list                                   # the presets and what each is for
    painter-preset best -S data.source=kaggle -S data.top_n=11
    painter-preset best --queue -S model.l2=0.001,0.01      # queued, a sweep around it
    painter-preset best --dry-run                           # print the dvc command, run nothing

A preset is a file ``presets/<name>.yaml`` in the project, shaped like ``params.yaml`` (one
mapping per section) and holding only the params it changes. Its values are checked against
the params reference first, then the command runs ``dvc exp run -S section.key=value ...``
with them (the ``-S`` given here last, so they win). Nothing is hidden: the command is printed
before it runs, and the experiment records every param as any other does. Also
``python -m painter_id.cli.preset``.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
from pathlib import Path
from typing import Optional, Sequence

import yaml

from painter_id.core.errors import PipelineError
from painter_id.core.params import SECTIONS, parse_section, read_params_file
from painter_id.core.paths import PARAMS_FILE
from painter_id.core.runner import run_stage
from painter_id.core.yaml_file import read_yaml

PRESETS_DIR = Path("presets")


def preset_names(folder: Path = PRESETS_DIR) -> list[str]:
    """The presets in ``folder``, by name (file name without ``.yaml``)."""
    return sorted(path.stem for path in folder.glob("*.yaml")) if folder.is_dir() else []


def preset_summary(path: Path) -> str:
    """A preset's first comment line: what it is for."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def read_preset(name: str, folder: Path = PRESETS_DIR, params_file: Path = PARAMS_FILE) -> dict[str, dict]:
    """The params preset ``name`` sets, as ``{section: {key: value}}``, checked against the params reference.

    Each section is validated merged over the project's ``params.yaml``, as the stages will
    read it, so a value the stages would refuse is refused here, before DVC starts.
    """
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(preset_names(folder)) or "none"
        raise PipelineError(f"no preset {name!r} in {folder}/ (presets: {known}); painter-preset --list shows them")
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict) or not all(isinstance(values, dict) for values in raw.values()):
        raise PipelineError(f"{path}: must be a mapping of sections to mappings of params, as in params.yaml")
    current = read_params_file(params_file)
    for section, values in raw.items():
        if section not in SECTIONS:
            raise PipelineError(f"{path}: unknown section {section!r}; valid sections: {', '.join(SECTIONS)}")
        try:
            parse_section(section, {**(current.get(section) or {}), **values})
        except PipelineError as exc:
            raise PipelineError(f"{path}: {exc}") from None
    return raw


def set_params(preset: dict[str, dict]) -> list[str]:
    """``-S section.key=value`` arguments for ``dvc exp run``, values written as YAML (lists as ``[a, b]``)."""
    args = []
    for section, values in preset.items():
        for key, value in values.items():
            text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
            # safe_dump ends a lone scalar with a document end marker.
            text = text.removesuffix("\n...").strip()
            args += ["-S", f"{section}.{key}={text}"]
    return args


def dvc_command(name: str, queue: bool = False, experiment: Optional[str] = None,
                extra: Sequence[str] = (), folder: Path = PRESETS_DIR) -> list[str]:
    """The ``dvc exp run`` command that runs preset ``name`` (``extra``: more ``-S`` values, applied last)."""
    command = ["dvc", "exp", "run"]
    if queue:
        command.append("--queue")
    if experiment:
        command += ["--name", experiment]
    command += set_params(read_preset(name, folder))
    for value in extra:
        command += ["-S", value]
    return command


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line flags of ``painter-preset``."""
    parser = argparse.ArgumentParser(prog="painter-preset",
                                     description="Run a named, reviewable set of params as one dvc exp run.")
    parser.add_argument("name", nargs="?", help="the preset: presets/NAME.yaml")
    parser.add_argument("--list", action="store_true", help="list the presets and what each is for")
    parser.add_argument("-S", "--set-param", action="append", default=[], metavar="PARAM=VALUE",
                        help="one more param for dvc exp run, applied after the preset's (repeatable)")
    parser.add_argument("--queue", action="store_true", help="queue the experiment (run it with dvc queue start)")
    parser.add_argument("-n", "--name", dest="experiment", help="the experiment's name")
    parser.add_argument("--dry-run", action="store_true", help="print the dvc command and run nothing")
    args = parser.parse_args(argv)
    if not args.list and not args.name:
        parser.error("name a preset (painter-preset --list shows them)")
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    """List the presets, or run one as ``dvc exp run``."""
    args = parse_args(argv)
    if args.list:
        for name in preset_names():
            print(f"{name:<16} {preset_summary(PRESETS_DIR / f'{name}.yaml')}")
        return
    command = dvc_command(args.name, args.queue, args.experiment, args.set_param)
    print(shlex.join(command), flush=True)
    if args.dry_run:
        return
    status = subprocess.run(command).returncode
    if status:
        raise PipelineError(f"dvc exp run exited {status} (its message is above)")


def cli() -> None:
    """Entry point of the ``painter-preset`` console command."""
    run_stage("preset", main)


if __name__ == "__main__":
    cli()
