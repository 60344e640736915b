"""Benchmark: load on ``ferkit serve`` — N requests at concurrency C against 127.0.0.1.

Usage:
    .venv/bin/python benchmarks/load.py [--model default] [--requests 2000] [--concurrency 32]
        [--detector yunet] [--detector-model ../shared/models/face_detection_yunet_2023mar.onnx]

Starts ``ferkit serve`` in a subprocess on a free local port, waits for ``/healthz``, then
posts a 640x480 JPEG with one face (scikit-image's astronaut) ``--requests`` times with
``--concurrency`` requests in flight, and prints throughput, p50/p99 latency and errors. Only
the loopback address is used; the run is bounded in requests and time.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import socket
import statistics
import subprocess
import sys
import time

import httpx
import numpy as np


def photo_jpeg() -> bytes:
    from PIL import Image
    from skimage.data import astronaut

    photo = np.full((480, 640, 3), 110, np.uint8)
    photo[0:480, 64:576] = astronaut()[16:496]
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


async def fire(url: str, body: bytes, requests: int, concurrency: int, deadline: float):
    latencies, errors = [], 0
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one():
            nonlocal errors
            async with semaphore:
                if time.monotonic() > deadline:
                    errors += 1
                    return
                started = time.perf_counter()
                try:
                    response = await client.post(
                        f"{url}/v1/predict", files={"file": ("photo.jpg", body, "image/jpeg")}
                    )
                    if response.status_code != 200 or len(response.json()["faces"]) != 1:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(requests)))
        elapsed = time.perf_counter() - started
    return latencies, errors, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--detector", default="yunet", help="serve's --detector")
    parser.add_argument("--detector-model", help="serve's --detector-model (a YuNet file)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-seconds", type=float, default=600, help="stop sending after this")
    arguments = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ferkit",
            "serve",
            "--model",
            arguments.model,
            "--port",
            str(port),
            "--detector",
            arguments.detector,
            "--offline",
        ]
        + (["--detector-model", arguments.detector_model] if arguments.detector_model else [])
    )
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise SystemExit("server did not start")
        body = photo_jpeg()
        deadline = time.monotonic() + arguments.max_seconds
        latencies, errors, elapsed = asyncio.run(
            fire(url, body, arguments.requests, arguments.concurrency, deadline)
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(f"model {arguments.model}: {arguments.requests} requests, concurrency "
          f"{arguments.concurrency}, 640x480 JPEG with one face")  # fmt: skip
    print(f"throughput {arguments.requests / elapsed:.1f} req/s over {elapsed:.1f} s")
    print(f"latency p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
    print(f"errors {errors}")


if __name__ == "__main__":
    main()
