"""``ferkit <command>``: parses arguments and calls one library function per command."""

from __future__ import annotations

import argparse
import json
import sys

from ferkit import __version__
from ferkit.errors import FerkitError


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="FER2013 CSV (.csv or .csv.gz) or image folder")
    parser.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="skip invalid rows/images (and report them) instead of stopping",
    )


def _add_download_detector_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--download-detector",
        action="store_true",
        help="--detector yunet without --detector-model: download OpenCV zoo's YuNet model "
        "once into the user cache, SHA-256 checked (FERKIT_ALLOW_DOWNLOAD=1 does the same)",
    )


def _add_training_options(parser: argparse.ArgumentParser, cross_validation: bool = False) -> None:
    from ferkit.training.arguments import add_config_options

    add_config_options(parser, cross_validation=cross_validation)


def _training_config(arguments: argparse.Namespace):
    from ferkit.training.arguments import config_from_arguments

    return config_from_arguments(arguments)


def _command_synth(arguments) -> int:
    from ferkit.data import write_synthetic_csv

    path = write_synthetic_csv(
        arguments.out, arguments.n, arguments.seed, arguments.png_dir, arguments.png_count
    )
    print(f"wrote {arguments.n} synthetic faces to {path}")
    if arguments.png_dir:
        print(f"wrote {arguments.png_count} held-out face images to {arguments.png_dir}")
    return 0


def _command_explore(arguments) -> int:
    from ferkit.explore import explore

    result = explore(arguments.data, arguments.out, arguments.seed, arguments.skip_bad_rows)
    print(result["table"])
    if result["skipped"]:
        print(result["skipped_summary"])
    if result["excluded"]:
        print(result["excluded_summary"])
    print(f"wrote {result['label_distribution']} and {result['samples']}")
    return 0


def _command_train(arguments) -> int:
    from ferkit.training import train
    from ferkit.training.distributed import from_environment

    result = train(_training_config(arguments))
    if not from_environment().is_main:  # under torchrun, rank 0 reports
        return 0
    print(
        f"best epoch {result.best_epoch}: validation accuracy {result.metrics['accuracy']:.2%}, "
        f"macro-F1 {result.metrics['macro_f1']:.3f}"
    )
    calibration = result.card.get("calibration")
    if calibration:
        print(
            f"calibration: temperature {calibration['temperature']:.3f} fitted on the validation "
            f"split, ECE {calibration['ece_before']:.3f} -> {calibration['ece_after']:.3f}"
        )
    print(f"run folder: {result.run_dir}")
    return 0


def _command_cv(arguments) -> int:
    from ferkit.training.crossval import cross_validate

    summary = cross_validate(
        _training_config(arguments), folds=arguments.folds, parallel_folds=arguments.parallel_folds
    )
    for fold in summary["per_fold"]:
        print(
            f"fold {fold['fold']}: accuracy {fold['accuracy']:.2%}  macro-F1 {fold['macro_f1']:.3f}"
        )
    print(
        f"{arguments.folds}-fold accuracy {summary['accuracy_mean']:.2%} ± "
        f"{summary['accuracy_std']:.2%}, macro-F1 {summary['macro_f1_mean']:.3f} ± "
        f"{summary['macro_f1_std']:.3f}"
    )
    print(f"wrote {arguments.out}/cv_summary.json and {arguments.out}/cv_folds.png")
    return 0


def _command_evaluate(arguments) -> int:
    from ferkit.data import describe_skipped
    from ferkit.evaluation import evaluate_dataset, format_metrics, format_probability_report

    metrics = evaluate_dataset(
        arguments.data,
        arguments.model,
        split=arguments.split,
        out=arguments.out,
        skip_bad_rows=arguments.skip_bad_rows,
        device=arguments.device,
        tta=arguments.tta,
        backend=arguments.backend,
    )
    if metrics["skipped"]:
        print(describe_skipped(metrics["skipped"]) + " (all listed in metrics.json)")
    print(format_metrics(metrics))
    print(format_probability_report(metrics))
    print(
        f"wrote {metrics['output_folder']}/metrics.json, confusion_matrix.png, "
        "reliability_diagram.png and risk_coverage.png"
    )
    return 0


def _command_calibrate(arguments) -> int:
    from ferkit.calibration import calibrate_model, format_calibration

    result = calibrate_model(
        arguments.model,
        arguments.data,
        split=arguments.split,
        out=arguments.out,
        skip_bad_rows=arguments.skip_bad_rows,
        device=arguments.device,
    )
    if result["skipped"]:
        from ferkit.data import describe_skipped

        print(describe_skipped(result["skipped"]))
    print(format_calibration(result))
    print(f"wrote the temperature into {result['card_path']}")
    if arguments.out:
        print(f"wrote {arguments.out}/calibration.json and reliability_diagram.png")
    return 0


def _command_info(arguments) -> int:
    from ferkit.modelcard import model_card_markdown

    print(model_card_markdown(arguments.model, as_json=arguments.json))
    return 0


def _command_predict(arguments) -> int:
    from ferkit.analyze import analyze, write_csv

    results, errors = analyze(
        arguments.inputs,
        model=arguments.model,
        detector=arguments.detector,
        detector_model=arguments.detector_model,
        margin=arguments.margin,
        save=arguments.save,
        every=arguments.every,
        device=arguments.device,
        tta=arguments.tta,
        batch_size=arguments.batch_size,
        progress=not arguments.no_progress,
        backend=arguments.backend,
        allow_download=arguments.download_detector,
        min_confidence=arguments.min_confidence,
    )
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    if arguments.csv:
        print(f"wrote {write_csv(results, arguments.csv)}", file=sys.stderr)
    if arguments.json:
        print(json.dumps([result.to_dict() for result in results], indent=2))
    else:
        _print_table(results)
    return 1 if errors else 0


def _print_table(results) -> None:
    if not results:
        return
    width = max(len(result.source) for result in results)
    names = next((list(face.probabilities) for result in results for face in result.faces), [])
    print(f"{'source':<{width}} {'frame':>6} {'box (x,y,w,h)':>20}  {'emotion':<9}"
          + "".join(f"{name[:8]:>9}" for name in names))  # fmt: skip
    for result in results:
        frame = "" if result.frame is None else str(result.frame)
        if not result.faces:
            print(f"{result.source:<{width}} {frame:>6} {'no face':>20}")
        for face in result.faces:
            box = f"{face.box.x},{face.box.y},{face.box.width},{face.box.height}"
            print(f"{result.source:<{width}} {frame:>6} {box:>20}  {face.label:<9}"
                  + "".join(f"{face.probabilities[name]:>9.3f}" for name in names))  # fmt: skip


def _command_ensemble(arguments) -> int:
    from ferkit.ensemble import create_ensemble

    path = create_ensemble(arguments.models, arguments.out)
    print(f"wrote an ensemble of {len(arguments.models)} models: {path}")
    print(f"use it with --model {arguments.out} (predict, evaluate)")
    return 0


def _command_export(arguments) -> int:
    from ferkit.export import export_onnx

    result = export_onnx(
        arguments.model,
        arguments.out,
        opset=arguments.opset,
        tta=arguments.tta,
        quantize=arguments.quantize,
        calibration=arguments.calibration,
        calibration_size=arguments.calibration_size,
    )
    if arguments.quantize is not None:
        print(f"calibrated with {result['calibration_description']}")
        print(
            f"int8 agreement: top-1 equal to PyTorch fp32 on {result['agreement']:.2%} of "
            f"{result['check_faces']} faces (limit {result['min_agreement']:.0%}), max "
            f"|PyTorch - ONNX Runtime int8| probability difference "
            f"{result['max_abs_difference']:.3f}"
        )
        print(
            f"wrote {result['path']} (int8, opset {result['opset']}, "
            f"classes {result['class_names']})"
        )
        return 0
    print(
        f"parity: max |PyTorch - ONNX Runtime| probability difference "
        f"{result['max_abs_difference']:.2e} on {result['parity_faces']} faces "
        f"(limit {result['tolerance']:.0e})"
    )
    print(f"wrote {result['path']} (opset {result['opset']}, classes {result['class_names']})")
    return 0


def _command_serve(arguments) -> int:
    from ferkit.serving import ServeConfig, serve

    serve(
        ServeConfig(
            model=arguments.model,
            detector=arguments.detector,
            detector_model=arguments.detector_model,
            host=arguments.host,
            port=arguments.port,
            max_upload_mb=arguments.max_upload_mb,
            max_pixels=arguments.max_pixels,
            device=arguments.device,
            backend=arguments.backend,
            allow_download=arguments.download_detector,
        )
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``ferkit`` argument parser (one sub-command per pipeline step)."""
    # The torch-free list of choices: importing detection or inference would load OpenCV and
    # torch for every command, --help included.
    from ferkit.choices import BACKENDS, DETECTORS, DEVICES
    from ferkit.choices import TTA_MODES as TTA_CHOICES

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
    synth.set_defaults(handler=_command_synth)

    explore = commands.add_parser("explore", help="class counts, distribution and sample faces")
    _add_data_options(explore)
    explore.add_argument("--out", required=True, help="folder for the PNG files")
    explore.add_argument("--seed", type=int, default=0, help="picks the 16 sample faces")
    explore.set_defaults(handler=_command_explore)

    train = commands.add_parser("train", help="train a model; writes a run folder")
    _add_training_options(train)
    train.set_defaults(handler=_command_train)

    cv = commands.add_parser("cv", help="stratified k-fold cross-validation")
    _add_training_options(cv, cross_validation=True)
    cv.add_argument("--folds", type=int, default=5)
    cv.add_argument(
        "--parallel-folds", type=int, default=1, help="folds trained at once, as processes"
    )
    cv.set_defaults(handler=_command_cv)

    evaluate = commands.add_parser("evaluate", help="accuracy, F1 and confusion matrix")
    _add_data_options(evaluate)
    evaluate.add_argument(
        "--model",
        default="default",
        help="run folder, checkpoint, ensemble folder, exported .onnx file, or a bundled "
        "model: default, small",
    )
    evaluate.add_argument("--split", help="only rows with this Usage (e.g. PrivateTest)")
    evaluate.add_argument("--out", help="output folder (default: the model's folder)")
    evaluate.add_argument("--device", default="auto", choices=DEVICES)
    evaluate.add_argument("--tta", choices=TTA_CHOICES, help="override the card's TTA")
    evaluate.add_argument(
        "--backend", choices=BACKENDS, default="torch", help="bf16: PyTorch bfloat16 (faster)"
    )
    evaluate.set_defaults(handler=_command_evaluate)

    calibrate = commands.add_parser(
        "calibrate", help="fit the temperature that calibrates a model's probabilities"
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
    calibrate.set_defaults(handler=_command_calibrate)

    info = commands.add_parser("info", help="print a model's card: use, limits, accuracy")
    info.add_argument(
        "model",
        nargs="?",
        default="default",
        help="run folder, checkpoint, ensemble folder, .onnx file or bundled name",
    )
    info.add_argument("--json", action="store_true", help="print the card as JSON")
    info.set_defaults(handler=_command_info)

    ensemble = commands.add_parser("ensemble", help="average several trained models")
    ensemble.add_argument("models", nargs="+", help="run folders or checkpoints (2 or more)")
    ensemble.add_argument("--out", required=True, help="ensemble folder to write")
    ensemble.set_defaults(handler=_command_ensemble)

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
    export.set_defaults(handler=_command_export)

    predict = commands.add_parser(
        "predict", help="faces and emotions in images, folders, globs and videos"
    )
    predict.add_argument("inputs", nargs="+", help="image/video files, folders or glob patterns")
    predict.add_argument(
        "--model",
        default="default",
        help="run folder, checkpoint, ensemble folder, exported .onnx file, or a bundled "
        "model: default, small",
    )
    predict.add_argument(
        "--detector",
        choices=DETECTORS,
        default="haar",
        help="face detector; 'none' when the images already are face crops (default: haar)",
    )
    predict.add_argument(
        "--detector-model",
        help="model file for --detector yunet (default: OpenCV zoo's, from the user cache)",
    )
    _add_download_detector_option(predict)
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
    predict.add_argument("--batch-size", type=int, default=256)
    predict.add_argument("--no-progress", action="store_true")
    predict.add_argument("--device", default="auto", choices=DEVICES)
    predict.add_argument("--tta", choices=TTA_CHOICES, help="override the card's TTA")
    predict.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto: ONNX Runtime if installed; bf16: PyTorch bfloat16 (fast on AMX CPUs, GPUs)",
    )
    predict.set_defaults(handler=_command_predict)

    serve = commands.add_parser("serve", help="web service + page (photo upload, webcam)")
    serve.add_argument("--model", default="default", help="model to serve (default: default)")
    serve.add_argument("--detector", choices=DETECTORS, default="haar")
    serve.add_argument(
        "--detector-model",
        help="model file for --detector yunet (default: OpenCV zoo's, from the user cache)",
    )
    _add_download_detector_option(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-upload-mb", type=float, default=10.0, help="larger uploads: 413")
    serve.add_argument(
        "--max-pixels", type=int, default=4096 * 4096, help="larger images are downscaled"
    )
    serve.add_argument("--device", default="auto", choices=DEVICES)
    serve.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto: ONNX Runtime if installed; bf16: PyTorch bfloat16 (fast on AMX CPUs, GPUs)",
    )
    serve.set_defaults(handler=_command_serve)
    return parser


def main(argv=None) -> int:
    """Run the CLI; returns the exit code (2 for bad input, 130 for Ctrl-C)."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        return arguments.handler(arguments)
    except FerkitError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # unreadable input, read-only or full output folder, ...
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
