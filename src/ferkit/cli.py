"""``ferkit <command>``: parses arguments and calls one library function per command."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from ferkit import __version__
from ferkit.errors import FerkitError


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="FER2013 CSV (.csv or .csv.gz) or image folder")
    parser.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="skip invalid rows/images (and report them) instead of stopping",
    )


def _add_detector_options(parser: argparse.ArgumentParser) -> None:
    from ferkit.choices import DETECTORS  # torch- and OpenCV-free, shared with ferkit.detection

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


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Ferkit's own warnings as one ``warning: ...`` line; others as Python prints them."""
    from ferkit.errors import FerkitWarning

    if issubclass(category, FerkitWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _PYTHON_SHOW_WARNING(message, category, filename, lineno, file, line)


_PYTHON_SHOW_WARNING = warnings.showwarning


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
        perturb=arguments.perturb,
    )
    if metrics["skipped"]:
        print(describe_skipped(metrics["skipped"]) + " (all listed in metrics.json)")
    print(format_metrics(metrics))
    if arguments.perturb:
        from ferkit.robustness import format_robustness

        print(format_robustness(metrics["robustness"]))
        print(f"wrote {metrics['output_folder']}/robustness.png")
    print(format_probability_report(metrics))
    print(
        f"wrote {metrics['output_folder']}/metrics.json, confusion_matrix.png, "
        "reliability_diagram.png and risk_coverage.png"
    )
    return 0


def _command_calibrate(arguments) -> int:
    from ferkit.calibrate import calibrate_model, format_calibration

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
    from ferkit.inference.pipeline import analyze
    from ferkit.inference.results import write_csv

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
        offline=arguments.offline,
        align=not arguments.no_align,
        smoothing=arguments.smoothing,
        min_confidence=arguments.min_confidence,
        log=(lambda line: print(line, file=sys.stderr)) if arguments.verbose else None,
    )
    if results:
        print(f"detector: {results[0].detector}", file=sys.stderr)
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


def _command_explain(arguments) -> int:
    from ferkit.explain import explain

    results, errors = explain(
        arguments.inputs,
        model=arguments.model,
        out=arguments.out,
        method=arguments.method,
        detector=arguments.detector,
        detector_model=arguments.detector_model,
        margin=arguments.margin,
        device=arguments.device,
        backend=arguments.backend,
        offline=arguments.offline,
    )
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    for explanation in results:
        box = explanation.box
        print(f"{explanation.source}  face at {box.x},{box.y},{box.width},{box.height}  "
              f"{explanation.label} {explanation.score:.0%}  ({explanation.method})")  # fmt: skip
    print(f"wrote {len(results)} explanation(s) (overlay .png + map .json) to {arguments.out}")
    return 1 if errors else 0


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
            offline=arguments.offline,
            align=not arguments.no_align,
        )
    )
    return 0


def _command_detector_install(arguments) -> int:
    from ferkit.detector_files import install_yunet_model

    print(f"installed {install_yunet_model(arguments.file)} (SHA-256 checked)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``ferkit`` argument parser (one sub-command per pipeline step)."""
    # The torch-free list of choices: importing detection or inference would load OpenCV and
    # torch for every command, --help included.
    from ferkit.choices import BACKENDS, DEVICES
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
    evaluate.add_argument(
        "--perturb",
        action="store_true",
        help="also score under blur, noise, JPEG, brightness, contrast and rotation "
        "(3 severities each): a table and robustness.png",
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
    predict.add_argument("--device", default="auto", choices=DEVICES)
    predict.add_argument("--tta", choices=TTA_CHOICES, help="override the card's TTA")
    predict.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto: ONNX Runtime if installed (a bundled model's INT8 variant on VNNI/AMX "
        "CPUs); int8: ONNX Runtime INT8; bf16: PyTorch bfloat16 (fast on AMX CPUs, GPUs)",
    )
    predict.set_defaults(handler=_command_predict)

    explain = commands.add_parser(
        "explain", help="where on each face the model looked (Grad-CAM or occlusion)"
    )
    explain.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    explain.add_argument("--out", required=True, help="folder for the overlays and maps")
    explain.add_argument(
        "--model",
        default="default",
        help="run folder, checkpoint, ensemble folder, exported .onnx file, or a bundled "
        "model: default, small",
    )
    explain.add_argument(
        "--method",
        choices=("auto", "gradcam", "occlusion"),
        default="auto",
        help="gradcam (PyTorch models) or occlusion (any model); auto: gradcam when possible",
    )
    _add_detector_options(explain)
    explain.add_argument("--margin", type=float, default=0.2, help="crop margin around a box")
    explain.add_argument("--device", default="auto", choices=DEVICES)
    explain.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="engine for the predictions and occlusion (Grad-CAM always runs PyTorch fp32)",
    )
    explain.set_defaults(handler=_command_explain)

    serve = commands.add_parser("serve", help="web service + page (photo upload, webcam)")
    serve.add_argument("--model", default="default", help="model to serve (default: default)")
    _add_detector_options(serve)
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

    detector = commands.add_parser("detector", help="manage the YuNet face detector's file")
    actions = detector.add_subparsers(dest="action", required=True)
    install = actions.add_parser(
        "install", help="check a face_detection_yunet_2023mar.onnx's SHA-256, copy it to the cache"
    )
    install.add_argument("file", help="the downloaded face_detection_yunet_2023mar.onnx")
    install.set_defaults(handler=_command_detector_install)
    return parser


def main(argv=None) -> int:
    """Run the CLI; returns the exit code (2 for bad input, 130 for Ctrl-C)."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    warnings.showwarning = _show_warning
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
