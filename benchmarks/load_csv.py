"""Benchmark: FER2013 CSV load time, cold (parse) and cached, next to the naive ways and gunzip.

Usage:
    .venv/bin/python benchmarks/load_csv.py [PATH] [--repeats 3] [--skip-str-split]

Runs ``--repeats`` rounds; each round times, one after the other, gunzip alone (the floor:
ferkit's cold load must at least inflate the file), ferkit's cold parse (``cache=False``),
the naive pandas way (``pandas.read_csv``, then ``np.fromstring`` per row, then the split by
Usage, as FER2013 notebooks do; skipped with a message when pandas is not installed) and
ferkit's cached load. Interleaving the methods keeps their ratio fair on a machine whose load
changes during the run. Prints the best time of each and the ratios; the naive per-row
``str.split`` of the classic notebook runs once at the end. The cache goes to a temporary
folder, so the user's cache is untouched. All methods must give identical arrays.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ferkit.data import load_fer2013
from ferkit.data.fer2013 import read_text_bytes

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


def naive_pandas_load(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """The usual FER2013 notebook: ``read_csv``, ``np.fromstring`` per row, split by Usage."""
    import pandas

    frame = pandas.read_csv(path)
    images = np.stack(
        [np.fromstring(pixels, dtype=np.uint8, sep=" ").reshape(48, 48) for pixels in frame.pixels]
    )
    labels = frame.emotion.to_numpy()
    splits = {}
    if "Usage" in frame:
        for usage in frame.Usage.unique():
            rows = (frame.Usage == usage).to_numpy()
            splits[usage] = (images[rows], labels[rows])
    return images, labels, splits


def pandas_available() -> bool:
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(DEFAULT_PATH))
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--skip-str-split", action="store_true", help="skip the slowest way")
    arguments = parser.parse_args()
    path = Path(arguments.path)
    use_pandas = pandas_available()
    if not use_pandas:
        print("pandas is not installed: the naive pandas way is skipped (pip install pandas)")
    times: dict[str, list[float]] = {"gunzip": [], "cold": [], "pandas": [], "cached": []}

    def timed(name, function):
        start = time.perf_counter()
        result = function()
        times[name].append(time.perf_counter() - start)
        return result

    with tempfile.TemporaryDirectory() as cache:
        load_fer2013(path, cache_dir=cache)  # fill the cache
        for _ in range(arguments.repeats):
            timed("gunzip", lambda: read_text_bytes(path))
            dataset = timed("cold", lambda: load_fer2013(path, cache=False))
            if use_pandas:
                pandas_images, pandas_labels, _ = timed("pandas", lambda: naive_pandas_load(path))
                assert np.array_equal(dataset.images, pandas_images), "pandas parse differs"
                assert np.array_equal(dataset.labels, pandas_labels)
            cached = timed("cached", lambda: load_fer2013(path, cache_dir=cache))
            assert np.array_equal(cached.images, dataset.images)
    print(f"file: {path} ({path.stat().st_size / 1e6:.1f} MB, {len(dataset)} rows)")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}, {arguments.repeats} interleaved rounds"
    )
    best = {name: min(values) for name, values in times.items() if values}
    print(f"{'method':<34}{'best s':>9}{'median s':>10}")
    labels = {
        "gunzip": "gunzip alone (the floor)",
        "cold": "ferkit parse (cold)",
        "pandas": "naive pandas + fromstring",
        "cached": "ferkit cached load",
    }
    for name, label in labels.items():
        if times[name]:
            print(f"{label:<34}{best[name]:>9.3f}{statistics.median(times[name]):>10.3f}")
    print(f"ferkit cold / gunzip floor: {best['cold'] / best['gunzip']:.2f}x")
    if use_pandas:
        ratios = [naive / cold for naive, cold in zip(times["pandas"], times["cold"])]
        print(
            f"speed-up over naive pandas: {best['pandas'] / best['cold']:.2f}x (best vs best), "
            f"per round {', '.join(f'{ratio:.2f}x' for ratio in ratios)}"
        )
    if not arguments.skip_str_split:
        start = time.perf_counter()
        naive_images, naive_labels = naive_load(path)
        naive = time.perf_counter() - start
        assert np.array_equal(dataset.images, naive_images), "fast parse differs from naive parse"
        assert np.array_equal(dataset.labels, naive_labels)
        print(f"{'naive per-row str.split (once)':<34}{naive:>9.3f}")
        print(f"speed-up over str.split: parse {naive / best['cold']:.1f}x")


if __name__ == "__main__":
    main()
