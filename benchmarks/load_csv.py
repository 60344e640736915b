"""Benchmark: FER2013 CSV load time, cold (parse) and cached, next to the naive per-row parse.

Usage:
    .venv/bin/python benchmarks/load_csv.py [PATH] [--repeats 3]

Prints seconds per load (best of --repeats). The cache goes to a temporary folder, so the
user's cache is untouched.
"""

from __future__ import annotations

import argparse
import gzip
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from ferkit.data import load_fer2013

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "shared/data/fer2013-train-publictest.csv.gz"


def naive_load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The classic notebook's way: csv rows, then ``str.split`` per row."""
    images, labels = [], []
    with gzip.open(path, "rt") if path.suffix == ".gz" else open(path) as handle:
        next(handle)
        for line in handle:
            emotion, pixels, *_ = line.rstrip("\n").split(",")
            labels.append(int(emotion))
            images.append(np.array(pixels.split(), dtype=np.uint8).reshape(48, 48))
    return np.stack(images), np.array(labels)


def best_of(function, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(DEFAULT_PATH))
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    path = Path(arguments.path)
    with tempfile.TemporaryDirectory() as cache:
        cold, dataset = best_of(lambda: load_fer2013(path, cache=False), arguments.repeats)
        load_fer2013(path, cache_dir=cache)  # fill the cache
        cached, cached_dataset = best_of(
            lambda: load_fer2013(path, cache_dir=cache), arguments.repeats
        )
    naive, (naive_images, naive_labels) = best_of(lambda: naive_load(path), 1)
    assert np.array_equal(dataset.images, naive_images), "fast parse differs from naive parse"
    assert np.array_equal(dataset.labels, naive_labels)
    assert np.array_equal(cached_dataset.images, dataset.images)
    print(f"file: {path} ({path.stat().st_size / 1e6:.1f} MB, {len(dataset)} rows)")
    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    print(f"{'method':<28}{'seconds':>10}")
    print(f"{'ferkit parse (cold)':<28}{cold:>10.3f}")
    print(f"{'ferkit cached load':<28}{cached:>10.3f}")
    print(f"{'naive per-row str.split':<28}{naive:>10.3f}")
    print(f"speed-up over naive: parse {naive / cold:.1f}x, cached {naive / cached:.0f}x")


if __name__ == "__main__":
    main()
