"""Benchmark: a training epoch of the notebook's CNN, ferkit (PyTorch) against TensorFlow/Keras.

Usage:
    .venv/bin/python benchmarks/compare_keras.py --keras-python /tmp/tfvenv/bin/python
        [--faces 6000] [--batch-size 64] [--rounds 3]

Optional: the Keras side needs a Python with TensorFlow (a separate venv, so the two frameworks'
OpenMP and oneDNN runtimes never share a process)::

    python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu

Without it the script says so and exits 0. Both sides train the same model, layer for layer
(``ferkit.models.classic``: three blocks of two 3x3 "same" convolutions + ReLU, 2x2 max-pool,
dropout, batch norm; dense 128 and 64 with dropout and batch norm; 7 outputs), with Adam at
1e-3, on the same ``--faces`` faces drawn by ferkit's synthetic generator, ``--batch-size`` a
step. Each side first trains one warm-up epoch (graph tracing, allocator, oneDNN primitive
caches), then one timed epoch; rounds alternate between the two, and the best epoch of each
side is kept, so both see the same machine load.

ferkit trains the way ``ferkit train`` does by default (``train_one_epoch``: bf16 autocast where
the CPU has native bf16, channels_last, batched augmentation on, glibc's malloc told to keep
freed memory as ``fit`` does); Keras the way the notebook
does (``model.fit`` on float32 arrays scaled to [0, 1], no augmentation), which is the cheaper
of the two per step.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def synthetic_faces(count: int):
    from ferkit.data.synth import generate_faces

    return generate_faces(count, seed=0)


def keras_epoch_seconds(faces_file: str, batch_size: int) -> float:
    """One timed Keras epoch after a warm-up epoch (runs in the TensorFlow venv)."""
    import numpy as np
    import tensorflow as tf
    from tensorflow.keras import layers

    tf.random.set_seed(0)
    with np.load(faces_file, allow_pickle=False) as arrays:
        images = arrays["images"][..., None].astype("float32") / 255.0
        labels = tf.keras.utils.to_categorical(arrays["labels"], 7)
    model = tf.keras.Sequential([tf.keras.Input((48, 48, 1))])
    for width, dropout in ((64, 0.25), (128, 0.5), (64, 0.5)):
        model.add(layers.Conv2D(width, 3, padding="same", activation="relu"))
        model.add(layers.Conv2D(width, 3, padding="same", activation="relu"))
        model.add(layers.MaxPooling2D(2))
        model.add(layers.Dropout(dropout))
        model.add(layers.BatchNormalization())
    model.add(layers.Flatten())
    model.add(layers.Dense(128, activation="relu"))
    model.add(layers.Dropout(0.5))
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dropout(0.25))
    model.add(layers.BatchNormalization())
    model.add(layers.Dense(7, activation="softmax"))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    model.fit(images, labels, batch_size=batch_size, epochs=1, verbose=0)
    started = time.perf_counter()
    model.fit(images, labels, batch_size=batch_size, epochs=1, verbose=0)
    return time.perf_counter() - started


def ferkit_epoch_seconds(images, labels, batch_size: int) -> float:
    """One timed ``train_one_epoch`` of ``classic`` after a warm-up epoch."""
    import torch

    from ferkit.models import create_model
    from ferkit.models.runtime import resolve_precision, tune_allocator
    from ferkit.training.config import TrainConfig
    from ferkit.training.epoch import build_optimizer, train_one_epoch

    torch.manual_seed(0)
    tune_allocator()  # as fit does on the CPU
    device = torch.device("cpu")
    config = TrainConfig(batch_size=batch_size, progress=False, epochs=[1])
    model = create_model("classic").to(memory_format=torch.channels_last)
    options = dict(
        optimizer=build_optimizer(model, config),
        config=config,
        device=device,
        autocast_dtype=resolve_precision(config.precision, device),
    )
    images, labels = torch.as_tensor(images), torch.as_tensor(labels)
    train_one_epoch(model, images, labels, epoch=0, **options)
    started = time.perf_counter()
    train_one_epoch(model, images, labels, epoch=1, **options)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keras-python", help="a Python with TensorFlow (e.g. /tmp/tfvenv)")
    parser.add_argument("--faces", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keras-faces", help=argparse.SUPPRESS)  # the child process's input
    arguments = parser.parse_args()
    if arguments.keras_faces:  # the child process, in the TensorFlow venv
        print(json.dumps(keras_epoch_seconds(arguments.keras_faces, arguments.batch_size)))
        return 0
    keras_python = arguments.keras_python
    if not keras_python or not Path(keras_python).exists():
        print("skipped: the Keras side needs --keras-python, a Python with TensorFlow "
              "(see the docstring for a separate venv)")  # fmt: skip
        return 0
    import numpy as np

    images, labels = synthetic_faces(arguments.faces)
    seconds = {"ferkit": [], "keras": []}
    with tempfile.TemporaryDirectory() as folder:
        faces_file = str(Path(folder) / "faces.npz")
        np.savez(faces_file, images=images, labels=labels)
        child = [keras_python, __file__, "--keras-faces", faces_file,
                 "--batch-size", str(arguments.batch_size)]  # fmt: skip
        for _ in range(arguments.rounds):
            seconds["ferkit"].append(ferkit_epoch_seconds(images, labels, arguments.batch_size))
            output = subprocess.run(child, capture_output=True, text=True, check=True).stdout
            seconds["keras"].append(float(output.strip().splitlines()[-1]))
            print(f"round: ferkit {seconds['ferkit'][-1]:.1f} s, "
                  f"Keras {seconds['keras'][-1]:.1f} s", flush=True)  # fmt: skip
    ferkit, keras = min(seconds["ferkit"]), min(seconds["keras"])
    print(f"{arguments.faces} faces, batch {arguments.batch_size}, {platform.machine()}; best of "
          f"{arguments.rounds}: ferkit {ferkit:.1f} s ({arguments.faces / ferkit:.0f} img/s), "
          f"Keras {keras:.1f} s ({arguments.faces / keras:.0f} img/s): "
          f"ferkit {keras / ferkit:.2f}x faster")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
