"""The user docs say what is true now: real params, links that resolve, commands and flags that exist.

User docs are the README and ``docs/``; they speak to users, so they carry no issue numbers,
no dates of runs and no internal file names (measured history lives in ``benchmarks/``,
changes in ``CHANGELOG.md``).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from painter_id.core.params import SECTIONS
from testkit.project import REPO_ROOT

USER_DOCS = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")])
PARAMS = {f"{section}.{field.name}" for section, cls in SECTIONS.items() for field in dataclasses.fields(cls)}
# Not params but named like them: what a run records about its network in MLflow, and Keras' own methods.
RECORDED = {"model.backbone_layers", "model.frozen_layers_resolved", "model.trainable_params", "model.frozen_params"}
KERAS_METHODS = {"model.fit", "model.predict", "model.evaluate", "model.summary", "model.save", "model.compile"}
MLFLOW_NAMES = {"mlflow.user", "mlflow.set_tracking_uri", "mlflow.log_input", "mlflow.log_model", "mlflow.runName",
                "mlflow.source", "mlflow.pyfunc", "mlflow.keras"}
# A section name, a dot and a word: a param, unless it is a file name (`model.keras`, `train.json`).
PARAM_LIKE = re.compile(rf"(?<![\w/.-])((?:{'|'.join(SECTIONS)})\.[a-z_]+)\b(?![./-]\w)")
FILE_SUFFIXES = {"keras", "json", "csv", "npy", "yaml", "h5", "png", "db", "py", "txt", "md", "lock"}
SCRIPTS = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
# What a page shows at a prompt or as a command line of a code block.
COMMAND_LINE = re.compile(r"^\s*(?:\$ )?((?:painter-[a-z]+|dvc|mlflow)(?=\s|$).*)$")


def doc_id(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def code_lines(path: Path) -> list[str]:
    """The lines of a page's fenced and indented code blocks, continuations joined."""
    lines, fenced, pending = [], False, ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            text = pending + line.strip()
            pending = text[:-1] + " " if text.endswith("\\") else ""
            if not pending:
                lines.append(text)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_\[\]()]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@pytest.mark.parametrize("page", USER_DOCS, ids=doc_id)
def test_every_param_a_page_names_exists(page):
    # A line showing the error a misspelt key gets names that key on purpose.
    text = "\n".join(line for line in page.read_text(encoding="utf-8").splitlines() if "unknown key" not in line)
    named = {match for match in PARAM_LIKE.findall(text) if match.split(".", 1)[1] not in FILE_SUFFIXES}
    unknown = named - PARAMS - RECORDED - KERAS_METHODS - MLFLOW_NAMES
    assert not unknown, f"{doc_id(page)} names params that do not exist: {sorted(unknown)}"


def test_every_param_the_presets_and_params_yaml_comments_name_exists():
    texts = [path.read_text(encoding="utf-8") for path in [REPO_ROOT / "params.yaml", *(REPO_ROOT / "presets").glob("*.yaml")]]
    comments = "\n".join(line.split("#", 1)[1] for text in texts for line in text.splitlines() if "#" in line)
    named = {match for match in PARAM_LIKE.findall(comments) if match.split(".", 1)[1] not in FILE_SUFFIXES}
    assert named and named - PARAMS == set(), sorted(named - PARAMS)


@pytest.mark.parametrize("page", USER_DOCS, ids=doc_id)
def test_every_relative_link_and_image_resolves_with_its_anchor(page):
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            broken.append(target)
        elif anchor and destination.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", destination.read_text(encoding="utf-8"), flags=re.MULTILINE)
            if anchor not in {slug(heading) for heading in headings}:
                broken.append(target)
    assert not broken, f"{doc_id(page)}: {broken}"


@functools.lru_cache(maxsize=None)
def help_text(command: tuple[str, ...]) -> str:
    """What ``command --help`` prints (the project's console commands run from this checkout)."""
    if command[0] in SCRIPTS:
        argv = [sys.executable, "-m", SCRIPTS[command[0]].split(":")[0]]
    else:
        argv = [sys.executable, "-m", command[0]]
    proc = subprocess.run([*argv, *command[1:], "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(command)} --help exited {proc.returncode}: {proc.stderr[-2000:]}"
    return proc.stdout


def shown_commands() -> list[tuple[str, tuple[str, ...], list[str]]]:
    """Every command line a user doc shows: (page, command words before the first flag, its flags)."""
    found = []
    for page in USER_DOCS:
        for line in code_lines(page):
            match = COMMAND_LINE.match(line)
            if not match:
                continue
            words = match.group(1).split("#")[0].split("|")[0].split()
            command = []
            for word in words:
                if word.startswith("-") or "=" in word or "/" in word or not re.fullmatch(r"[a-z][a-z-]*", word):
                    break
                command.append(word)
            # Subcommands are at most two words deep (`dvc exp run`, `mlflow models serve`, `painter-trial start`).
            command = command[:3]
            flags = [word.split("=")[0] for word in words if re.fullmatch(r"--?[a-zA-Z][\w-]*(=.*)?", word)]
            found.append((doc_id(page), tuple(command), flags))
    return found


def _subcommand(command: tuple[str, ...]) -> tuple[str, ...]:
    """The longest prefix of ``command`` that is a command (``dvc exp show`` but ``dvc repro``)."""
    for length in range(len(command), 0, -1):
        try:
            help_text(command[:length])
            return command[:length]
        except AssertionError:
            continue
    raise AssertionError(f"{' '.join(command)}: no such command")


def test_every_command_and_flag_the_docs_show_exists():
    missing = []
    for page, command, flags in shown_commands():
        if command[0].startswith("painter-") and command[0] not in SCRIPTS:
            missing.append(f"{page}: {command[0]} is no console command")
            continue
        real = _subcommand(command)
        text = help_text(real)
        missing += [f"{page}: {' '.join(real)} {flag}" for flag in flags
                    if not re.search(rf"(?<![\w-]){re.escape(flag)}\b", text)]
    assert not missing, missing


@pytest.mark.parametrize("page", USER_DOCS, ids=doc_id)
def test_no_issue_numbers_dates_of_runs_or_internal_files(page):
    text = page.read_text(encoding="utf-8")
    found = (re.findall(r"(?<![\w&])#\d+\b|\bissues? #?\d+", text)
             + re.findall(r"\b20\d\d-\d\d-\d\d\b|\b\d\d:\d\d UTC\b", text)
             + re.findall(r"\b(?:tests|testkit|\.ci)/[\w.-][\w/.-]*|DEVELOPERS\.md|\.\./shared/hooks", text))
    assert not found, f"{doc_id(page)}: {found}"


def test_the_readme_is_short_and_starts_with_the_two_set_up_commands():
    lines = (REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 260
    commands = [line.strip() for line in lines[:20] if line.startswith("    python3 -m venv")]
    assert commands[0].endswith("pip install -e . && dvc repro")
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = commands[1].split(" && ")[-1]
    assert test_command == "python -m pytest" and f"\n{test_command}\n" in ci


def test_the_readme_layout_is_the_tree():
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("```")[1]
    named = {word for line in block.splitlines() for word in line.split()[:2] if word.endswith("/")}
    library = {f"painter_id/{path.name}/" for path in (REPO_ROOT / "painter_id").iterdir()
               if (path / "__init__.py").exists()}
    assert library <= named, f"the layout leaves out {sorted(library - named)}"
    assert all((REPO_ROOT / path).is_dir() for path in named), [path for path in named if not (REPO_ROOT / path).is_dir()]
