"""Keep third-party chatter (exporter warnings, ONNX Runtime and OpenCV log lines) off the console.

Normal use of ferkit prints its results and nothing else. The libraries it calls do not
always agree: the PyTorch ONNX exporter logs "torchvision is not installed" lines and emits
FutureWarnings, ONNX Runtime logs graph warnings, FFmpeg (inside OpenCV) logs a line for a
file it cannot parse. None of them is something a user can act on: ferkit checks the export
itself (parity, agreement) and reports unreadable files with its own ``error:`` line. The
silencing is scoped: :func:`quiet_third_party` wraps only the calls that make the noise, and
restores every logger level, warning filter and OpenCV log level when it exits.

Example:
    >>> import warnings
    >>> with quiet_third_party():
    ...     warnings.warn("nobody sees this", FutureWarning)
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

#: Loggers of the export toolchain (torch.onnx logs "torchvision is not installed. Skipping
#: torchvision::nms" at WARNING on every export; the others warn about graph rewrites).
EXPORT_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir")

#: FFmpeg's messages (e.g. "moov atom not found" for a broken video) bypass OpenCV's log level:
#: OpenCV reads this variable once, when its FFmpeg backend opens its first file, so
#: :func:`quiet_third_party` sets it (unless the user did) around the opening of a video.
FFMPEG_LOG_VARIABLE = "OPENCV_FFMPEG_LOGLEVEL"

#: ONNX Runtime log severity for ferkit's sessions: 3 = errors only (0 verbose .. 4 fatal).
ONNXRUNTIME_LOG_SEVERITY = 3


@contextlib.contextmanager
def quiet_third_party():
    """Silence third-party warnings and log lines inside the block, then restore them.

    Raises what the block raises: only messages are hidden, never errors.

    Example:
        >>> import logging
        >>> with quiet_third_party():
        ...     logging.getLogger("torch.onnx").warning("hidden")
        >>> logging.getLogger("torch.onnx").level  # restored
        0
    """
    loggers = [logging.getLogger(name) for name in EXPORT_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    opencv_level = _set_opencv_log_level("error")
    ffmpeg_level = os.environ.get(FFMPEG_LOG_VARIABLE)
    if ffmpeg_level is None:
        os.environ[FFMPEG_LOG_VARIABLE] = "-8"  # AV_LOG_QUIET
    try:
        with warnings.catch_warnings():
            # Deprecation and future warnings of the exporter's internals (e.g. copyreg's
            # "isinstance(treespec, LeafSpec) is deprecated") concern torch, not the user.
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if opencv_level is not None:
            _set_opencv_log_level(opencv_level)
        if ffmpeg_level is None:
            os.environ.pop(FFMPEG_LOG_VARIABLE, None)


def _set_opencv_log_level(level):
    """Set OpenCV's log level (a name or a previous value); return the previous one or None."""
    if "cv2" not in sys.modules:  # never import OpenCV just to quiet it
        return None
    cv2 = sys.modules["cv2"]
    try:
        previous = cv2.getLogLevel()
        cv2.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR if level == "error" else level)
    except (AttributeError, cv2.error):  # an OpenCV build without the logging API
        return None
    return previous


def onnxruntime_session_options(options=None):
    """ONNX Runtime session options that log errors only (see ONNXRUNTIME_LOG_SEVERITY).

    Example:
        >>> onnxruntime_session_options().log_severity_level  # doctest: +SKIP
        3
    """
    import onnxruntime

    options = options if options is not None else onnxruntime.SessionOptions()
    options.log_severity_level = ONNXRUNTIME_LOG_SEVERITY
    return options


def announce(message: str) -> None:
    """Print one ferkit status line on stderr (stdout stays for results, e.g. ``--json``).

    Example:
        >>> announce("preparing the model")  # doctest: +SKIP
    """
    print(message, file=sys.stderr, flush=True)
