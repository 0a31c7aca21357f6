"""Command ``painter-page``: a local web page to try a model: pick a painting, see its top-5 painters.

    painter-page [--model models:/painter-id@champion] [--port 8765] [--max-mb 20]

Serves http://127.0.0.1:PORT/ (this machine only); see :mod:`painter_id.serving.page`.
Also ``python -m painter_id.cli.page``.
"""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from painter_id.core import stop
from painter_id.core.runner import run_stage

DEFAULT_MODEL = "models:/painter-id@champion"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line flags of ``painter-page``."""
    parser = argparse.ArgumentParser(prog="painter-page",
                                     description="A local web page to try a model: pick a painting, see its top-5 painters.")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="MLflow model URI (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8765, help="default: %(default)s (0: any free port)")
    parser.add_argument("--max-mb", type=int, default=20, help="largest upload accepted (default: %(default)s)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: as the train stage)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Load the model and serve the page on 127.0.0.1 until interrupted."""
    args = parse_args(argv)
    from werkzeug.serving import make_server

    from painter_id.serving.page import create_app, load

    served = load(args.model, args.tracking_uri)
    server = make_server("127.0.0.1", args.port, create_app(served, args.max_mb), threaded=True)
    print(f"painter-page: {served.origin}\n  open http://127.0.0.1:{server.server_port}/  (Ctrl-C stops)", flush=True)
    try:
        with stop.ends_normally():  # Ctrl-C is how the page is meant to stop: exit 0
            server.serve_forever()
    finally:
        server.server_close()


def cli() -> None:
    """Entry point of the ``painter-page`` console command."""
    run_stage("page", main)


if __name__ == "__main__":
    cli()
