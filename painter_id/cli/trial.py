"""Command ``painter-trial``: a team's servers on this machine, for a first hour with the team setup.

    painter-trial start --users alice,bob     # PostgreSQL, S3, MLflow with logins; Ctrl-C stops them
    painter-trial start --detach ...          # the same, left running in the background
    painter-trial env alice                   # the exports a member pastes into their shell
    painter-trial status                      # what runs, where
    painter-trial check                       # from a member's shell and clone: does the team setup work?
    painter-trial stop                        # stops everything; the data stays in the folder

The servers and their data live in ``--dir`` (default ``.painter-trial`` in the current
folder); a later start finds them there, on the same ports. See docs/team-setup.md and
:mod:`painter_id.tracking.trial_stack`. Also ``python -m painter_id.cli.trial``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from painter_id.core import stop
from painter_id.core.errors import PipelineError
from painter_id.core.runner import run_stage

USER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


def user_list(text: str) -> list[str]:
    """An ``argparse`` type: comma-separated login names (letters, digits, ``_.-``; not ``admin``)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if not USER_NAME.match(name) or name == "admin":
            raise argparse.ArgumentTypeError(f"{name!r} is no login name: use letters, digits, _ . - (not admin)")
    return names


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line flags of ``painter-trial``."""
    parser = argparse.ArgumentParser(prog="painter-trial", description=__doc__.splitlines()[0].split(": ", 1)[1])
    commands = parser.add_subparsers(dest="command", required=True, metavar="{start,stop,status,env,check}")
    start = commands.add_parser("start", help="start the servers (foreground until Ctrl-C, or --detach)")
    start.add_argument("--users", type=user_list, default=[], metavar="NAME,...",
                       help="members' MLflow logins to create (kept for later starts)")
    start.add_argument("--detach", action="store_true", help="leave the servers running and return")
    commands.add_parser("stop", help="stop every server of the trial (data kept)")
    commands.add_parser("status", help="say which servers run and where")
    env = commands.add_parser("env", help="print the exports a member pastes into their shell")
    env.add_argument("user", help="a login given to start --users (or admin)")
    commands.add_parser("check", help="check the MLflow server, login, artifact store and DVC remote this shell uses")
    for command in commands.choices.values():
        command.add_argument("--dir", type=Path, default=None, metavar="FOLDER",
                             help="the trial's data folder (default: .painter-trial in the current folder)")
    return parser.parse_args(argv)


def describe(folder: Path, state, keys: dict) -> str:
    """What runs where, then each member's exports."""
    lines = [f"PostgreSQL  127.0.0.1:{state.ports['postgres']}  databases mlflow, mlflow_auth  (data: {state.postgres_home})",
             f"S3          {state.s3_url}  buckets dvc-store, mlflow-artifacts  (data: {folder / 's3'})",
             f"MLflow      {state.mlflow_url}  logins admin, {', '.join(state.users) or '(none: start --users NAME)'}"]
    from painter_id.tracking.trial_stack import member_exports

    for user in state.users:
        lines += ["", f"# {user}: paste into their shell, or run: eval \"$(painter-trial env {user} --dir {folder})\"",
                  member_exports(state, keys, user).rstrip()]
    return "\n".join(lines)


def start(folder: Path, users: list[str], detach: bool) -> None:
    """``painter-trial start``: start, print, then return (``--detach``) or wait for Ctrl-C and stop."""
    import os

    from painter_id.tracking import trial_stack

    state, procs = trial_stack.start_stack(folder, users, supervisor=None if detach else os.getpid())
    print(describe(folder.absolute(), state, trial_stack.load_secrets(trial_stack.Paths(folder.absolute()))), flush=True)
    if detach:
        print(f"\nRunning in the background; stop it with: painter-trial stop --dir {folder}", flush=True)
        return
    print("\nRunning; press Ctrl-C to stop it (or run painter-trial stop)", flush=True)
    # Ctrl-C, or SIGTERM from `painter-trial stop`, is how the trial is meant to stop: exit 0.
    try:
        with stop.ends_normally():
            while True:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        raise PipelineError(f"the trial's {name} server stopped (exit code {proc.returncode}); see "
                                            f"{folder / 'logs' / (name + '.log')}; the other servers were stopped")
                time.sleep(1)
    finally:
        trial_stack.stop_stack(folder, procs)
    print(f"Stopped; the data stays in {folder.absolute()}", flush=True)


def status(folder: Path) -> None:
    """``painter-trial status``: one line per server; exit code 1 when one of them is down."""
    from painter_id.tracking import trial_stack

    state, keys = trial_stack.members(folder)
    up = trial_stack.running(state, trial_stack.Paths(folder.absolute()))
    addresses = {"postgres": f"127.0.0.1:{state.ports['postgres']}", "s3": state.s3_url, "mlflow": state.mlflow_url}
    for name in trial_stack.SERVICES:
        print(f"{name:<10}  {addresses[name]:<24}  {'running' if up.get(name) else 'stopped'}")
    print(f"data: {folder.absolute()}")
    if not all(up.get(name) for name in trial_stack.SERVICES):
        sys.exit(1)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Run the ``painter-trial`` subcommand."""
    args = parse_args(argv)
    from painter_id.tracking import trial_stack

    folder = args.dir or Path(trial_stack.DEFAULT_FOLDER)
    if args.command == "start":
        start(folder, args.users, args.detach)
    elif args.command == "stop":
        trial_stack.stop_stack(folder)
        print(f"Stopped; the data stays in {folder.absolute()}")
    elif args.command == "status":
        status(folder)
    elif args.command == "env":
        state, keys = trial_stack.members(folder)
        print(trial_stack.member_exports(state, keys, args.user), end="")
    else:
        from painter_id.tracking.team_check import check

        for line in check():
            print(line)


def cli() -> None:
    """Entry point of the ``painter-trial`` console command."""
    run_stage("trial", main)


if __name__ == "__main__":
    cli()
