"""`dvc status` and a no-op `dvc repro` on a Kaggle-sized source folder (8,446 paintings by default).

The folder is a dependency of ``download`` (``${data.path}`` in ``dvc.yaml``), which DVC
checks against its state database (sizes, modification times and inodes; no image is read
again) on every ``dvc status`` and ``dvc repro``. This measures what that costs when nothing
changed, and that one added painting is still noticed by a bare ``dvc status``::

    python -m benchmarks.status_large --images 8446

The paintings are tiny distinct JPEGs in 50 artist folders: the cost of listing and of
DVC's bookkeeping depends on the number of files, not their size. Prints JSON; asserts no time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from benchmarks.run import machine, spread, utc_now
from testkit.project import dvc, make_project, run

ARTISTS = 50


def write_folder(root: Path, images: int, seed: int = 0) -> Path:
    """``root/images/<Artist_k>/<Artist_k>_<n>.jpg``: ``images`` distinct 8x8 JPEGs, Kaggle layout."""
    rng = np.random.default_rng(seed)
    for index in range(images):
        folder = root / "images" / f"Artist_{index % ARTISTS}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"{folder.name}_{index}.jpg", quality=95)
    return root


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children so far."""
    times = os.times()
    return times.children_user + times.children_system


def timed(project: Path, *args: str) -> tuple[float, float, str]:
    """Wall and CPU seconds a ``dvc`` command takes in ``project``, and what it printed.

    CPU time is reported beside wall time because on a shared machine the wall time
    mostly measures the other processes.
    """
    start, cpu = time.perf_counter(), children_cpu()
    proc = dvc(project, *args)
    return time.perf_counter() - start, children_cpu() - cpu, proc.stdout


def main() -> None:
    """Print the median/min/max seconds of `dvc status` and of a no-op `dvc repro download`, as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8446)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(Path(tmp) / "paintings", args.images)
        project = make_project(Path(tmp) / "project", {"data": {"source": "path", "path": str(folder)}})
        start = time.perf_counter()
        dvc(project, "repro", "download")
        first_repro = time.perf_counter() - start
        status, repro, status_cpu, repro_cpu = [], [], [], []
        for _ in range(args.repeats):
            seconds, cpu, out = timed(project, "status")
            assert "download:" not in out, out  # nothing changed, and DVC says so (the later stages never ran)
            status.append(seconds)
            status_cpu.append(cpu)
            seconds, cpu, out = timed(project, "repro", "download")
            assert "Running stage 'download'" not in out, out
            repro.append(seconds)
            repro_cpu.append(cpu)
        source_alone = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run([sys.executable, "-m", "stages.source"], project)
            source_alone.append(time.perf_counter() - start)
        Image.new("RGB", (8, 8), (1, 2, 3)).save(folder / "images" / "Artist_0" / "added.jpg")
        seconds, cpu, out = timed(project, "status", "download", "--json")
        noticed = yaml.safe_load(out)
    print(json.dumps({
        "date": utc_now(),
        "machine": machine(),
        "images": args.images,
        "first_repro_download_s": round(first_repro, 1),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "dvc_status_s": spread(status),
        "dvc_status_cpu_s": spread(status_cpu),
        "noop_repro_download_s": spread(repro),
        "noop_repro_download_cpu_s": spread(repro_cpu),
        "source_stage_alone_s": spread(source_alone),
        "added_painting_marks_download_changed": "download" in noticed,
        "dvc_status_after_adding_s": round(seconds, 3),
        "dvc_status_after_adding_cpu_s": round(cpu, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
