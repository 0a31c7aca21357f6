"""A Markdown page run as a script: its shell sessions, command by command, with the outputs it shows checked.

A fenced block whose info string is ``console <terminal>`` (GitHub reads the first word) is
a piece of a terminal session: lines starting with ``$ `` are commands (a trailing ``\\``
continues one), the lines after a command are what the page shows it printing. Each
terminal (``admin``, ``alice``, ``bob``...) keeps its folder and its exported variables from
one block to the next, as a shell window would; blocks run in page order. Other blocks
(``sh``, plain) are reference and are not run.

What a page shows must be the real output: :func:`output_mismatch` compares it, line by
line, with what the command printed, after :func:`normalize` (numbers, hex ids and the home
folder vary between runs). A ``...`` line stands for lines left out; without one, the shown
lines must be the first (or last) ones printed, and lines shown together must be printed
together. No pytest here, so ``benchmarks/`` could use it too.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

FENCE = re.compile(r"^```console (\w[\w-]*)\s*$")
ELLIPSIS = "..."


@dataclass
class Command:
    """One ``$ `` line of a page (continuations joined), what the page shows it print, and where it is."""

    terminal: str
    text: str
    shown: list[str]
    line: int


@dataclass
class Ran:
    """A command as it ran: exit code and combined stdout and stderr."""

    command: Command
    returncode: int
    output: str


def parse(page: Path) -> list[Command]:
    """Every command of the page's ``console <terminal>`` blocks, in page order."""
    commands: list[Command] = []
    terminal: Optional[str] = None
    pending = ""
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if terminal is None:
            match = FENCE.match(line)
            terminal = match.group(1) if match else None
            continue
        if line.startswith("```"):
            terminal = None
        elif pending or line.startswith("$ "):
            text = pending + (line[2:] if not pending else line.strip())
            pending = text[:-1] + " " if text.endswith("\\") else ""
            if not pending:
                commands.append(Command(terminal, text, [], number))
        elif commands:
            commands[-1].shown.append(line)
    return commands


def normalize(line: str, home: Optional[Path] = None) -> str:
    """``line`` as compared: the home folder as ``~``, hex ids and numbers as placeholders, spaces collapsed."""
    if home is not None:
        line = line.replace(str(home), "~")
    line = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line)  # colours, should a tool print any
    line = re.sub(r"─+", "─", line)  # a table's rules are as wide as its widest number
    line = re.sub(r"\b[0-9a-f]{7,}\b", "<hex>", line)
    line = re.sub(r"\d+(\.\d+)?", "<n>", line)
    return " ".join(line.split())


def output_mismatch(shown: list[str], printed: str, home: Optional[Path] = None) -> Optional[str]:
    """Why ``shown`` (a page's lines, ``...`` for lines left out) is not what was ``printed``; ``None`` when it is.

    A command shown without output must print nothing: a page leaves output out only with ``...``.
    """
    lines = [line for line in (normalize(line, home) for line in printed.splitlines()) if line]
    chunks: list[list[str]] = [[]]
    for line in shown:
        if line.strip() == ELLIPSIS:
            chunks.append([])
        elif line.strip():
            chunks[-1].append(normalize(line, home))
    if len(chunks) == 1 and not chunks[0]:
        return f"prints {len(lines)} lines the page does not show (show them, or ...)" if lines else None
    anchored_start, anchored_end = bool(chunks[0]), bool(chunks[-1])
    position = 0
    for index, chunk in enumerate(chunks):
        if not chunk:
            continue
        starts = [i for i in range(position, len(lines) - len(chunk) + 1) if lines[i:i + len(chunk)] == chunk]
        if index == 0 and anchored_start:
            starts = starts[:1] if starts[:1] == [0] else []
        if index == len(chunks) - 1 and anchored_end:
            starts = [i for i in starts if i + len(chunk) == len(lines)]
        if not starts:
            return f"not printed as shown: {chunk!r}"
        position = starts[0] + len(chunk)
    return None


@dataclass
class Terminal:
    """A shell window: its current folder and its environment, kept between commands."""

    name: str
    cwd: Path
    env: dict[str, str]
    log: list[Ran] = field(default_factory=list)

    def run(self, command: Command, timeout: float = 900) -> Ran:
        """Run ``command`` with bash in this window; remember the folder and variables it leaves."""
        with tempfile.TemporaryDirectory(prefix="docs-shell-") as scratch:
            after = Path(scratch)
            script = (f"cd {quote(self.cwd)} || exit 99\n{command.text}\nstatus=$?\n"
                      f"pwd > {quote(after / 'cwd')}; env -0 > {quote(after / 'env')}; exit $status\n")
            proc = subprocess.run(["bash", "-c", script], env=self.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, timeout=timeout)
            if (after / "cwd").exists():
                self.cwd = Path((after / "cwd").read_text().strip())
                pairs = (item.split("=", 1) for item in (after / "env").read_text().split("\0") if "=" in item)
                self.env = dict(pairs)
        ran = Ran(command, proc.returncode, proc.stdout)
        self.log.append(ran)
        return ran


def quote(path: Path) -> str:
    """``path`` quoted for bash."""
    return "'" + str(path).replace("'", "'\\''") + "'"


def run_page(commands: list[Command], terminals: dict[str, Terminal]) -> list[Ran]:
    """Run ``commands`` in their terminals, in order; stop at the first that fails (its output in the error)."""
    done = []
    for command in commands:
        ran = terminals[command.terminal].run(command)
        done.append(ran)
        if ran.returncode != 0:
            raise AssertionError(f"line {command.line} ({command.terminal}): `{command.text}` exited "
                                 f"{ran.returncode}:\n{ran.output[-4000:]}")
    return done


def transcript(done: list[Ran]) -> str:
    """Every command and its full output, as a page would show them (to write a page's outputs from)."""
    return "\n".join(f"[{ran.command.terminal}] $ {ran.command.text}\n{ran.output}" for ran in done)


def base_environment(home: Path, path_dirs: list[Path]) -> dict[str, str]:
    """A fresh login's environment: ``HOME``, a ``PATH`` with ``path_dirs`` first, and nothing of this process's."""
    return {"HOME": str(home), "PATH": os.pathsep.join([*map(str, path_dirs), "/usr/local/bin", "/usr/bin", "/bin"]),
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "dumb", "USER": os.environ.get("USER", "root")}


def console_scripts(folder: Path, repo: Path, python: str) -> Path:
    """In ``folder``, one executable per ``[project.scripts]`` entry of ``repo``'s pyproject, running ``repo``'s code.

    What pip's console scripts do (import the module, call the function), but from this
    checkout whatever the environment has installed, so a page's ``painter-trial`` is the code
    under test.
    """
    # A plain reading of the [project.scripts] table (tomllib is Python 3.11+, the project supports 3.10).
    table = (repo / "pyproject.toml").read_text(encoding="utf-8").split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    scripts = dict(re.findall(r'^([\w-]+)\s*=\s*"([^"]+)"', table, flags=re.MULTILINE))
    folder.mkdir(parents=True, exist_ok=True)
    for name, target in scripts.items():
        module, function = target.split(":")
        path = folder / name
        path.write_text(f"#!{python}\nimport sys\nsys.path.insert(0, {str(repo)!r})\n"
                        f"from {module} import {function}\nsys.exit({function}())\n", encoding="utf-8")
        path.chmod(0o755)
    return folder
