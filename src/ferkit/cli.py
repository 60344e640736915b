"""``ferkit <command>``: parses arguments and calls one library function per command.

The parser itself (sub-commands and options) is in ``ferkit.cli_parser``; here is what each
sub-command runs, and ``main``.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from ferkit.cli_parser import build_command_parser
from ferkit.utils.errors import FerkitError


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Ferkit's own warnings as one ``warning: ...`` line; others as Python prints them."""
    from ferkit.utils.errors import FerkitWarning

    if issubclass(category, FerkitWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _PYTHON_SHOW_WARNING(message, category, filename, lineno, file, line)


_PYTHON_SHOW_WARNING = warnings.showwarning


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
    from ferkit.data.explore import explore

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
        from ferkit.evaluation.modelcard import describe_map

        print(
            f"calibration: {describe_map(calibration)} fitted on the validation "
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
    from ferkit.evaluation.evaluate import (
        evaluate_dataset,
        format_metrics,
        format_probability_report,
    )

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
        from ferkit.evaluation.robustness import format_robustness

        print(format_robustness(metrics["robustness"]))
        print(f"wrote {metrics['output_folder']}/robustness.png")
    print(format_probability_report(metrics))
    print(
        f"wrote {metrics['output_folder']}/metrics.json, confusion_matrix.png, "
        "reliability_diagram.png and risk_coverage.png"
    )
    return 0


def _command_calibrate(arguments) -> int:
    from ferkit.evaluation.calibrate import calibrate_model, format_calibration

    result = calibrate_model(
        arguments.model,
        arguments.data,
        split=arguments.split,
        out=arguments.out,
        skip_bad_rows=arguments.skip_bad_rows,
        device=arguments.device,
        method=arguments.method,
    )
    if result["skipped"]:
        from ferkit.data import describe_skipped

        print(describe_skipped(result["skipped"]))
    print(format_calibration(result))
    print(f"wrote the calibration into {result['card_path']}")
    if arguments.out:
        print(f"wrote {arguments.out}/calibration.json and reliability_diagram.png")
    return 0


def _command_info(arguments) -> int:
    from ferkit.evaluation.modelcard import model_card_markdown

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
        face_check=not arguments.no_face_check,
        smoothing=arguments.smoothing,
        min_confidence=arguments.min_confidence,
        log=(lambda line: print(line, file=sys.stderr)) if arguments.verbose else None,
    )
    if results:
        checked = [result.rejected_faces for result in results if result.rejected_faces is not None]
        check = f"; the face check dropped {sum(checked)} false face(s)" if checked else ""
        print(f"detector: {results[0].detector}{check}", file=sys.stderr)
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
    tracked = any(face.track is not None for result in results for face in result.faces)
    track_header = f" {'track':>5}" if tracked else ""
    print(f"{'source':<{width}} {'frame':>6}{track_header} {'box (x,y,w,h)':>20}  {'emotion':<9}"
          + "".join(f"{name[:8]:>9}" for name in names))  # fmt: skip
    for result in results:
        frame = "" if result.frame is None else str(result.frame)
        if not result.faces:
            print(f"{result.source:<{width}} {frame:>6}{' ' * len(track_header)} {'no face':>20}")
        # A video's faces in track order, so each person keeps a row position over time.
        faces = sorted(result.faces, key=lambda face: face.track or 0) if tracked else result.faces
        for face in faces:
            track = f" {face.track if face.track is not None else '':>5}" if tracked else ""
            box = f"{face.box.x},{face.box.y},{face.box.width},{face.box.height}"
            print(f"{result.source:<{width}} {frame:>6}{track} {box:>20}  {face.label:<9}"
                  + "".join(f"{face.probabilities[name]:>9.3f}" for name in names))  # fmt: skip


def _command_explain(arguments) -> int:
    from ferkit.evaluation.explain import explain

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
        face_check=not arguments.no_face_check,
        align=not arguments.no_align,
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
    from ferkit.models.ensemble import create_ensemble

    path = create_ensemble(arguments.models, arguments.out)
    print(f"wrote an ensemble of {len(arguments.models)} models: {path}")
    print(f"use it with --model {arguments.out} (predict, evaluate)")
    return 0


def _command_export(arguments) -> int:
    from ferkit.inference.export import export_onnx

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
            face_check=not arguments.no_face_check,
        )
    )
    return 0


def _command_detector_install(arguments) -> int:
    from ferkit.faces.detector_files import install_yunet_model

    print(f"installed {install_yunet_model(arguments.file)} (SHA-256 checked)")
    return 0


#: What each sub-command runs, by the name ``build_command_parser`` knows it by.
_HANDLERS = {
    "synth": _command_synth,
    "explore": _command_explore,
    "train": _command_train,
    "cv": _command_cv,
    "evaluate": _command_evaluate,
    "calibrate": _command_calibrate,
    "info": _command_info,
    "ensemble": _command_ensemble,
    "export": _command_export,
    "predict": _command_predict,
    "explain": _command_explain,
    "serve": _command_serve,
    "detector install": _command_detector_install,
}


def build_parser() -> argparse.ArgumentParser:
    """The ``ferkit`` argument parser, each sub-command bound to the handler it runs."""
    return build_command_parser(_HANDLERS)


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
