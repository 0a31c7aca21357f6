"""Resize throughput on Kaggle-sized images, where draft decoding and the process pool pay off.

The main benchmark uses the 224 px sample paintings, which decode in about half a millisecond;
the real archive's paintings are often over 1000 px. This upscales sample paintings to
``--width`` x ``--height`` JPEGs once, then times the resize stage's code (1 and 2 processes)
against a plain single-process PIL loop over the same files::

    python -m benchmarks.resize_large --images 300
"""

from __future__ import annotations

import argparse
import glob
import json
import tempfile
import time
from pathlib import Path

from PIL import Image

from benchmarks.run import SAMPLE, machine, plain_pil_loop, spread, utc_now
from painter_id.core.parallel import open_workers
from painter_id.core.params import ResizeParams
from painter_id.data.images import sha256_file
from painter_id.data.resized import resize_to_npy


def large_copies(count: int, width: int, height: int, work: Path) -> list[str]:
    """``count`` sample paintings upscaled to ``width`` x ``height`` JPEGs (quality 90) in ``work``."""
    sources = sorted(glob.glob(str(SAMPLE / "images" / "*" / "*.jpg")))[:count]
    if not sources:
        raise SystemExit(f"no sample paintings under {SAMPLE}; this benchmark needs ../shared")
    paths = []
    for index, source in enumerate(sources):
        path = work / f"{index}.jpg"
        Image.open(source).convert("RGB").resize((width, height)).save(path, quality=90)
        paths.append(str(path))
    return paths


def main() -> None:
    """Print images/s of the plain loop and of the resize stage with 1 and 2 processes, as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1050)
    parser.add_argument("--size", type=int, default=75, help="resize.image_size")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = large_copies(args.images, args.width, args.height, work)
        files = [(p, sha256_file(p)) for p in paths]
        rates: dict[str, list[float]] = {"plain_loop": [], "stage_1_process": [], "stage_2_processes": []}
        for _ in range(args.repeats):
            start = time.perf_counter()
            plain_pil_loop(paths, args.size)
            rates["plain_loop"].append(len(paths) / (time.perf_counter() - start))
            for workers, key in ((1, "stage_1_process"), (2, "stage_2_processes")):
                params = ResizeParams(image_size=args.size, mode="pad")
                with open_workers(workers) as pool:
                    start = time.perf_counter()
                    resize_to_npy(files, work / "out.npy", params, pool, key)
                    rates[key].append(len(paths) / (time.perf_counter() - start))
    result = {key: spread(values) for key, values in rates.items()}
    result["speedup_2_processes"] = round(result["stage_2_processes"]["median"] / result["plain_loop"]["median"], 2)
    print(json.dumps({"date": utc_now(), "machine": machine(), "images": args.images,
                      "source_px": [args.width, args.height], **result}, indent=2))


if __name__ == "__main__":
    main()
