"""YuNet with ONNX Runtime: the same detections as OpenCV's ``FaceDetectorYN``, in half the time.

OpenCV runs YuNet through its own DNN module; ONNX Runtime runs the same network about twice as
fast on a CPU (docs/benchmarks.md: a 640x480 photo in ~4 ms instead of ~9.5 ms on 2 cores).
The YuNet 2023mar file has a fixed 640x640 input; :class:`YuNetOnnxRuntime` makes its height
and width symbolic (every layer is convolutional) and then does what ``FaceDetectorYN`` does
around the network, so the two give the same rows:

1. the BGR image, pixel values 0-255, is padded with zeros at the bottom and right to
   multiples of 32 (the network's largest stride);
2. for each stride (8, 16, 32) and each cell (row, column) of its grid, the score is
   ``sqrt(clip(cls) * clip(obj))``, the box centre ``(column + dx, row + dy) * stride``, its
   size ``exp(dw, dh) * stride``, the landmarks ``(column + lx, row + ly) * stride``;
3. boxes scoring below the threshold are dropped, then non-maximum suppression (IoU 0.3,
   OpenCV's ``NMSBoxes``, at most 5,000 boxes, as ``FaceDetectorYN``'s defaults).

A row is ``x, y, width, height, 5 landmark (x, y) pairs, score``, like ``FaceDetectorYN``.

Example:
    >>> runner = YuNetOnnxRuntime("face_detection_yunet_2023mar.onnx", 0.6)  # doctest: +SKIP
    >>> runner.detect(bgr_photo).shape  # doctest: +SKIP
    (1, 15)
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

#: The strides of YuNet's three output levels, and the padding multiple they need.
STRIDES = (8, 16, 32)
#: ``FaceDetectorYN``'s defaults: IoU of non-maximum suppression, boxes kept before it.
NMS_THRESHOLD = 0.3
TOP_K = 5000


def onnxruntime_available() -> bool:
    """True when ``onnx`` and ``onnxruntime`` (the ``onnx`` extra) are installed."""
    return all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime"))


class YuNetOnnxRuntime:
    """A YuNet ONNX file run by ONNX Runtime, decoded as ``FaceDetectorYN`` decodes it.

    Args:
        model_path: the YuNet ONNX file (already located and checked by the caller).
        score_threshold: faces scoring lower are dropped (0-1).
    """

    def __init__(self, model_path: str | os.PathLike, score_threshold: float):
        import onnx
        import onnxruntime

        from ferkit.utils.quiet import onnxruntime_session_options

        model = onnx.load(str(model_path))
        outputs = {output.name for output in model.graph.output}
        expected = {
            f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in STRIDES
        }
        input_shape = model.graph.input[0].type.tensor_type.shape.dim
        if not expected <= outputs or len(input_shape) != 4:
            raise ValueError(f"its outputs are {sorted(outputs)}, not YuNet's {sorted(expected)}")
        input_shape[2].dim_param, input_shape[3].dim_param = "height", "width"
        for output in model.graph.output:  # their lengths follow the image size now
            output.type.tensor_type.ClearField("shape")
        options = onnxruntime_session_options()
        # The classifier runs right after on the same cores; spinning threads would cost it.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [output.name for output in self.session.get_outputs()]
        self.score_threshold = float(score_threshold)

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        """Rows (faces, 15) for a uint8 BGR image (H, W, 3), best score first."""
        height, width = bgr.shape[:2]
        padded_height, padded_width = (-(-height // 32) * 32), (-(-width // 32) * 32)
        blob = np.zeros((1, 3, padded_height, padded_width), np.float32)
        blob[0, :, :height, :width] = bgr.transpose(2, 0, 1)
        outputs = dict(
            zip(self.output_names, self.session.run(self.output_names, {self.input_name: blob}))
        )
        rows = np.concatenate([
            _decode(outputs, stride, padded_height // stride, padded_width // stride)
            for stride in STRIDES
        ])  # fmt: skip
        rows = rows[rows[:, -1] >= self.score_threshold]
        return _non_maximum_suppression(rows, self.score_threshold)


def _decode(outputs: dict, stride: int, rows: int, columns: int) -> np.ndarray:
    """One output level's cells as detection rows (before thresholding)."""
    classes = np.clip(outputs[f"cls_{stride}"].reshape(-1), 0.0, 1.0)
    objectness = np.clip(outputs[f"obj_{stride}"].reshape(-1), 0.0, 1.0)
    boxes = outputs[f"bbox_{stride}"].reshape(-1, 4)
    landmarks = outputs[f"kps_{stride}"].reshape(-1, 5, 2)
    grid_row, grid_column = np.divmod(np.arange(rows * columns), columns)
    cell = np.stack([grid_column, grid_row], axis=1).astype(np.float32)  # (x, y) of each cell
    centre = (cell + boxes[:, :2]) * stride
    size = np.exp(boxes[:, 2:]) * stride
    points = (cell[:, None, :] + landmarks) * stride
    score = np.sqrt(classes * objectness)
    return np.concatenate(
        [centre - size / 2, size, points.reshape(-1, 10), score[:, None]], axis=1
    ).astype(np.float32)


def _non_maximum_suppression(rows: np.ndarray, score_threshold: float) -> np.ndarray:
    import cv2

    if len(rows) == 0:
        return rows.reshape(0, 15)
    kept = cv2.dnn.NMSBoxes(
        rows[:, :4].tolist(), rows[:, -1].tolist(), score_threshold, NMS_THRESHOLD, top_k=TOP_K
    )
    return rows[np.asarray(kept, dtype=np.int64).reshape(-1)]
