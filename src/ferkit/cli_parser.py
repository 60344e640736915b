"""The ``ferkit`` argument parser: its sub-commands and their options, apart from what they run.

Torch- and OpenCV-free (``ferkit --version`` and ``--help`` load neither); ``ferkit.cli`` holds
the handler each sub-command calls and binds them through ``build_command_parser(handlers)``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping

from ferkit import __version__

# The torch- and OpenCV-free lists of choices, shared with the library: importing detection or
# inference here would load OpenCV and torch for every command, --help included.
from ferkit.utils.choices import BACKENDS, CALIBRATION_METHODS, DETECTORS, DEVICES
from ferkit.utils.choices import TTA_MODES as TTA_CHOICES


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="FER2013 CSV (.csv or .csv.gz) or image folder")
    parser.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="skip invalid rows/images (and report them) instead of stopping",
    )


def _add_detector_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detector",
        choices=DETECTORS,
        default="yunet",
        help="face detector (default: yunet, falling back to haar with a warning when its model "
        "file cannot be had); 'none' when the images already are face crops",
    )
    parser.add_argument(
        "--detector-model",
        help="YuNet ONNX file (default: $FERKIT_YUNET_MODEL, else OpenCV zoo's file from the "
        "user cache, downloaded there once, SHA-256 checked)",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="never download the YuNet model file (FERKIT_OFFLINE=1 does the same)",
    )
    parser.add_argument(
        "--no-align",
        action="store_true",
        help="crop faces square from the box instead of aligning them from their landmarks",
    )
    parser.add_argument(
        "--no-face-check",
        action="store_true",
        help="keep every YuNet detection scoring 0.6 or more instead of asking for more "
        "candidates, dropping those the face check finds are not faces and looking again in "
        "turned copies of a photo where none is found",
    )


def _add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="default",
        help="run folder, checkpoint, ensemble folder, exported .onnx file, or a bundled "
        "model: default, small",
    )


def _add_engine_options(
    parser: argparse.ArgumentParser, default_backend: str, backend_help: str
) -> None:
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--backend", choices=BACKENDS, default=default_backend, help=backend_help)


def _add_training_options(parser: argparse.ArgumentParser, cross_validation: bool = False) -> None:
    from ferkit.training.arguments import add_config_options

    add_config_options(parser, cross_validation=cross_validation)


def build_command_parser(
    handlers: Mapping[str, Callable[[argparse.Namespace], int]],
) -> argparse.ArgumentParser:
    """The ``ferkit`` argument parser (one sub-command per pipeline step).

    Args:
        handlers: the function each sub-command runs, by its name (``"detector install"`` for
            the nested one); set as the parsed arguments' ``handler``.

    Returns:
        The parser; ``ferkit.cli.build_parser()`` binds it to the CLI's handlers.

    Example:
        >>> from collections import defaultdict
        >>> parser = build_command_parser(defaultdict(lambda: print))
        >>> parser.parse_args(["info", "small"]).model
        'small'
    """
    parser = argparse.ArgumentParser(
        prog="ferkit",
        description="Facial expression recognition: train, evaluate and use emotion classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"ferkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser("synth", help="write a synthetic FER2013-format CSV of faces")
    synth.add_argument("--out", required=True, help="CSV file to write (.csv or .csv.gz)")
    synth.add_argument("--n", type=int, default=3500, help="number of faces (default 3500)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--png-dir", help="also save held-out faces as PNG crops here")
    synth.add_argument("--png-count", type=int, default=8, help="faces to save with --png-dir")
    synth.set_defaults(handler=handlers["synth"])

    explore = commands.add_parser("explore", help="class counts, distribution and sample faces")
    _add_data_options(explore)
    explore.add_argument("--out", required=True, help="folder for the PNG files")
    explore.add_argument("--seed", type=int, default=0, help="picks the 16 sample faces")
    explore.set_defaults(handler=handlers["explore"])

    train = commands.add_parser("train", help="train a model; writes a run folder")
    _add_training_options(train)
    train.set_defaults(handler=handlers["train"])

    cv = commands.add_parser("cv", help="stratified k-fold cross-validation")
    _add_training_options(cv, cross_validation=True)
    cv.add_argument("--folds", type=int, default=5)
    cv.add_argument(
        "--parallel-folds", type=int, default=1, help="folds trained at once, as processes"
    )
    cv.set_defaults(handler=handlers["cv"])

    evaluate = commands.add_parser("evaluate", help="accuracy, F1 and confusion matrix")
    _add_data_options(evaluate)
    _add_model_option(evaluate)
    evaluate.add_argument("--split", help="only rows with this Usage (e.g. PrivateTest)")
    evaluate.add_argument("--out", help="output folder (default: the model's folder)")
    evaluate.add_argument("--tta", choices=TTA_CHOICES, help="override the card's TTA")
    _add_engine_options(evaluate, "torch", "bf16: PyTorch bfloat16 (faster)")
    evaluate.add_argument(
        "--perturb",
        action="store_true",
        help="also score under blur, noise, JPEG, brightness, contrast and rotation "
        "(3 severities each): a table and robustness.png",
    )
    evaluate.set_defaults(handler=handlers["evaluate"])

    calibrate = commands.add_parser(
        "calibrate", help="fit the calibration (temperature or map) of a model's probabilities"
    )
    calibrate.add_argument(
        "model", help="run folder, checkpoint, ensemble folder or bundled name (default, small)"
    )
    _add_data_options(calibrate)
    calibrate.add_argument(
        "--split", help="only rows with this Usage: a validation split (e.g. PublicTest)"
    )
    calibrate.add_argument(
        "--out", help="also write calibration.json and reliability_diagram.png here"
    )
    calibrate.add_argument("--device", default="auto", choices=DEVICES)
    calibrate.add_argument(
        "--method",
        default="temperature",
        choices=CALIBRATION_METHODS,
        help="temperature: one scalar, keeps every top class (default); vector: a scale and "
        "bias per class; dirichlet: a regularised matrix and bias (both can change a few top "
        "classes; the report gives accuracy before and after)",
    )
    calibrate.set_defaults(handler=handlers["calibrate"])

    info = commands.add_parser("info", help="print a model's card: use, limits, accuracy")
    info.add_argument(
        "model",
        nargs="?",
        default="default",
        help="run folder, checkpoint, ensemble folder, .onnx file or bundled name",
    )
    info.add_argument("--json", action="store_true", help="print the card as JSON")
    info.set_defaults(handler=handlers["info"])

    ensemble = commands.add_parser("ensemble", help="average several trained models")
    ensemble.add_argument("models", nargs="+", help="run folders or checkpoints (2 or more)")
    ensemble.add_argument("--out", required=True, help="ensemble folder to write")
    ensemble.set_defaults(handler=handlers["ensemble"])

    export = commands.add_parser("export", help="export a model to ONNX (parity-checked)")
    export.add_argument("model", help="run folder, checkpoint, ensemble folder or bundled name")
    export.add_argument("--format", choices=("onnx",), default="onnx")
    export.add_argument("--out", required=True, help="file to write, e.g. model.onnx")
    export.add_argument("--opset", type=int, default=18)
    export.add_argument("--tta", choices=TTA_CHOICES, help="override the card's TTA")
    export.add_argument(
        "--quantize",
        choices=("int8",),
        help="static INT8 quantization with ONNX Runtime (needs --calibration)",
    )
    export.add_argument(
        "--calibration",
        metavar="DATA",
        help="real faces for --quantize: FER2013 CSV or image folder (Training rows only)",
    )
    export.add_argument(
        "--calibration-size", type=int, default=1024, help="calibration faces (default 1024)"
    )
    export.set_defaults(handler=handlers["export"])

    predict = commands.add_parser(
        "predict", help="faces and emotions in images, folders, globs and videos"
    )
    predict.add_argument("inputs", nargs="+", help="image/video files, folders or glob patterns")
    _add_model_option(predict)
    _add_detector_options(predict)
    predict.add_argument("--margin", type=float, default=0.2, help="crop margin around a box")
    predict.add_argument(
        "--min-confidence",
        type=float,
        metavar="P",
        help="label faces whose top (calibrated) probability is below P 'uncertain'",
    )
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    predict.add_argument("--csv", help="also write one CSV row per face to this file")
    predict.add_argument("--save", help="write annotated images/videos to this folder")
    predict.add_argument("--every", type=int, default=1, help="analyse every N-th video frame")
    predict.add_argument(
        "--smoothing",
        type=float,
        default=0.6,
        help="videos: weight of the past in each face track's moving average of probabilities "
        "(0 = off; photos are never smoothed)",
    )
    predict.add_argument("--batch-size", type=int, default=256)
    predict.add_argument("--no-progress", action="store_true")
    predict.add_argument(
        "--verbose", action="store_true", help="say which inference engine runs, and why"
    )
    predict.add_argument("--tta", choices=TTA_CHOICES, help="override the card's TTA")
    _add_engine_options(
        predict,
        "auto",
        "auto: ONNX Runtime if installed (a bundled model's INT8 variant on VNNI/AMX CPUs); "
        "int8: ONNX Runtime INT8; bf16: PyTorch bfloat16 (fast on AMX CPUs, GPUs)",
    )
    predict.set_defaults(handler=handlers["predict"])

    explain = commands.add_parser(
        "explain", help="where on each face the model looked (Grad-CAM or occlusion)"
    )
    explain.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    explain.add_argument("--out", required=True, help="folder for the overlays and maps")
    _add_model_option(explain)
    explain.add_argument(
        "--method",
        choices=("auto", "gradcam", "occlusion"),
        default="auto",
        help="gradcam (PyTorch models) or occlusion (any model); auto: gradcam when possible",
    )
    _add_detector_options(explain)
    explain.add_argument("--margin", type=float, default=0.2, help="crop margin around a box")
    _add_engine_options(
        explain,
        "auto",
        "engine for the predictions and occlusion (Grad-CAM always runs PyTorch fp32)",
    )
    explain.set_defaults(handler=handlers["explain"])

    serve = commands.add_parser("serve", help="web service + page (photo upload, webcam)")
    serve.add_argument("--model", default="default", help="model to serve (default: default)")
    _add_detector_options(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-upload-mb", type=float, default=10.0, help="larger uploads: 413")
    serve.add_argument(
        "--max-pixels", type=int, default=4096 * 4096, help="larger images are downscaled"
    )
    _add_engine_options(
        serve,
        "auto",
        "auto: ONNX Runtime if installed; bf16: PyTorch bfloat16 (fast on AMX CPUs, GPUs)",
    )
    serve.set_defaults(handler=handlers["serve"])

    detector = commands.add_parser("detector", help="manage the YuNet face detector's file")
    actions = detector.add_subparsers(dest="action", required=True)
    install = actions.add_parser(
        "install", help="check a face_detection_yunet_2023mar.onnx's SHA-256, copy it to the cache"
    )
    install.add_argument(
        "file", help="the downloaded face_detection_yunet_2023mar.onnx (or the folder holding it)"
    )
    install.set_defaults(handler=handlers["detector install"])
    return parser
