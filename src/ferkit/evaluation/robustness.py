"""How much worse a model gets on degraded faces: ``ferkit evaluate --perturb``.

Each perturbation degrades every evaluation face at three severities, in batches on arrays or
tensors, deterministically (a seed per perturbation and severity); the model is scored on each
degraded copy and the drop from the clean score is reported. The degradations are those of a
webcam frame or a forwarded photo compared to a clean FER2013 crop: blur (out of focus, motion,
upscaled small faces), sensor noise, JPEG compression, brightness and contrast changes, and a
tilted head or camera.

Example:
    >>> import numpy as np
    >>> faces = np.full((2, 48, 48), 128, np.uint8)
    >>> bool(perturb(faces, "brightness", 3, seed=0).mean() != 128)
    True
"""

from __future__ import annotations

import io

import numpy as np

from ferkit.utils.errors import FerkitError

#: Per perturbation: the parameter that grows with severity, and its value at severities 1-3.
#: Sizes are in pixels of a 48x48 face, gray levels of 0-255, JPEG quality, degrees.
SEVERITIES = {
    "blur": ("Gaussian sigma, px", (0.5, 1.0, 1.5)),
    "noise": ("Gaussian std, gray levels", (8.0, 16.0, 32.0)),
    "jpeg": ("JPEG quality", (50, 25, 10)),
    "brightness": ("offset, gray levels (random sign)", (25.0, 50.0, 75.0)),
    "contrast": ("contrast factor about the face's mean", (0.7, 0.5, 0.3)),
    "rotation": ("angle, degrees (random sign)", (5.0, 10.0, 15.0)),
}
PERTURBATIONS = tuple(SEVERITIES)


def _to_uint8(values) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _blur(faces: np.ndarray, sigma: float, rng) -> np.ndarray:  # noqa: ARG001
    from scipy.ndimage import gaussian_filter

    # sigma 0 along the batch axis: each face is blurred on its own, all in one call.
    return _to_uint8(gaussian_filter(faces.astype(np.float32), (0, sigma, sigma), mode="nearest"))


def _noise(faces: np.ndarray, std: float, rng) -> np.ndarray:
    return _to_uint8(faces + rng.normal(0.0, std, faces.shape).astype(np.float32))


def _jpeg(faces: np.ndarray, quality: int, rng) -> np.ndarray:  # noqa: ARG001
    from PIL import Image

    # JPEG has no batched codec: one encode/decode per face (about 0.1 ms for 48x48).
    result = np.empty_like(faces)
    for index, face in enumerate(faces):
        buffer = io.BytesIO()
        Image.fromarray(face).save(buffer, format="JPEG", quality=int(quality))
        result[index] = np.asarray(Image.open(buffer).convert("L"))
    return result


def _signs(count: int, rng) -> np.ndarray:
    return np.where(rng.random(count) < 0.5, -1.0, 1.0).astype(np.float32)


def _brightness(faces: np.ndarray, offset: float, rng) -> np.ndarray:
    return _to_uint8(faces + (offset * _signs(len(faces), rng))[:, None, None])


def _contrast(faces: np.ndarray, factor: float, rng) -> np.ndarray:  # noqa: ARG001
    means = faces.reshape(len(faces), -1).mean(axis=1)[:, None, None]
    return _to_uint8(means + (faces.astype(np.float32) - means) * factor)


def _rotation(faces: np.ndarray, degrees: float, rng) -> np.ndarray:
    import torch

    angles = torch.from_numpy((np.radians(degrees) * _signs(len(faces), rng)).astype(np.float32))
    cosine, sine, zero = torch.cos(angles), torch.sin(angles), torch.zeros_like(angles)
    # About the face's centre; pixels brought in from outside repeat the border.
    theta = torch.stack([torch.stack([cosine, -sine, zero], 1),
                         torch.stack([sine, cosine, zero], 1)], 1)  # fmt: skip
    images = torch.from_numpy(faces.astype(np.float32))[:, None]
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    rotated = torch.nn.functional.grid_sample(
        images, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return _to_uint8(rotated[:, 0].numpy())


_FUNCTIONS = {"blur": _blur, "noise": _noise, "jpeg": _jpeg, "brightness": _brightness,
              "contrast": _contrast, "rotation": _rotation}  # fmt: skip


def perturb(faces, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """A degraded copy of uint8 faces (N, H, W): perturbation ``name`` at severity 1-3.

    The same faces, name, severity and seed always give the same result.

    Raises:
        FerkitError: for an unknown perturbation or severity.

    Example:
        >>> import numpy as np
        >>> faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48), dtype=np.uint8)
        >>> bool((perturb(faces, "noise", 2, seed=1) == perturb(faces, "noise", 2, seed=1)).all())
        True
    """
    if name not in SEVERITIES:
        raise FerkitError(f"unknown perturbation {name!r}; choose from {', '.join(SEVERITIES)}")
    values = SEVERITIES[name][1]
    if not 1 <= severity <= len(values):
        raise FerkitError(f"{name}: severity {severity} outside 1-{len(values)}")
    faces = np.asarray(faces, dtype=np.uint8)
    # One stream per (seed, perturbation, severity): results do not depend on the order.
    rng = np.random.default_rng([seed, PERTURBATIONS.index(name), severity])
    return _FUNCTIONS[name](faces, values[severity - 1], rng)


def robustness_report(
    predictor,
    faces,
    labels,
    perturbations=PERTURBATIONS,
    seed: int = 0,
    batch_size: int = 512,
) -> dict:
    """Accuracy and macro-F1 on clean faces and under each perturbation and severity.

    Args:
        predictor: anything with ``predict_proba(uint8 faces, batch_size)`` and
            ``class_names`` (a :class:`ferkit.inference.Predictor`).
        faces: uint8 (N, H, W) faces at the model's input size.
        labels: class indices (N,) into ``predictor.class_names``.
        perturbations: names from :data:`PERTURBATIONS`.
        seed: seed of the random parts (noise, signs of shifts and rotations).
        batch_size: faces per forward pass.

    Returns:
        ``{"clean": {...}, "perturbations": {name: {"parameter": ..., "severities": [{
        "severity", "value", "accuracy", "macro_f1", "accuracy_drop"}, ...]}}, "mean_drop"
        per severity, "seed", "count"}``.

    Example:
        >>> report = robustness_report(predictor, faces, labels)  # doctest: +SKIP
        >>> report["perturbations"]["blur"]["severities"][0]["accuracy_drop"]  # doctest: +SKIP
        0.004
    """
    from sklearn.metrics import accuracy_score, f1_score

    unknown = [name for name in perturbations if name not in SEVERITIES]
    if unknown:
        raise FerkitError(f"unknown perturbation(s) {', '.join(map(repr, unknown))}; choose "
                          f"from {', '.join(SEVERITIES)}")  # fmt: skip
    labels = np.asarray(labels)
    classes = list(range(len(predictor.class_names)))

    def score(images) -> dict:
        predictions = predictor.predict_proba(images, batch_size).argmax(axis=1)
        return {"accuracy": float(accuracy_score(labels, predictions)),
                "macro_f1": float(f1_score(labels, predictions, labels=classes,
                                           average="macro", zero_division=0))}  # fmt: skip

    clean = score(faces)
    report = {"count": int(len(labels)), "seed": seed, "clean": clean, "perturbations": {}}
    for name in perturbations:
        parameter, values = SEVERITIES[name]
        rows = []
        for severity in range(1, len(values) + 1):
            result = score(perturb(faces, name, severity, seed))
            result["accuracy_drop"] = clean["accuracy"] - result["accuracy"]
            rows.append({"severity": severity, "value": values[severity - 1], **result})
        report["perturbations"][name] = {"parameter": parameter, "severities": rows}
    severities = range(max((len(item["severities"]) for item in
                            report["perturbations"].values()), default=0))  # fmt: skip
    report["mean_accuracy_drop"] = [
        float(np.mean([item["severities"][index]["accuracy_drop"]
                       for item in report["perturbations"].values()]))
        for index in severities
    ]  # fmt: skip
    return report


def format_robustness(report: dict) -> str:
    """A text table: accuracy per perturbation and severity, and the drop from clean.

    Example:
        >>> row = {"severity": 1, "value": 0.5, "accuracy": 0.5, "macro_f1": 0.4,
        ...        "accuracy_drop": 0.1}
        >>> report = {"count": 10, "clean": {"accuracy": 0.6, "macro_f1": 0.5},
        ...           "perturbations": {"blur": {"parameter": "sigma", "severities": [row]}}}
        >>> print(format_robustness(report).splitlines()[2])
        blur         sigma                                      0.5   50.00 %   (-10.00)    0.400
    """
    lines = [
        f"robustness on {report['count']} faces: clean accuracy "
        f"{report['clean']['accuracy']:.2%}, macro-F1 {report['clean']['macro_f1']:.3f}".replace(
            "%", " %"
        ),
        f"{'perturbation':<13}{'parameter':<38}{'value':>8}{'accuracy':>10}{'(drop)':>11}"
        f"{'macro-F1':>9}",
    ]
    for name, item in report["perturbations"].items():
        for row in item["severities"]:
            drop = f"({-row['accuracy_drop'] * 100 + 0.0:+.2f})"  # + 0.0: no -0.00
            lines.append(
                f"{name:<13}{item['parameter']:<38}{row['value']:>8g}"
                f"{row['accuracy'] * 100:>8.2f} %{drop:>11}{row['macro_f1']:>9.3f}"
            )
    return "\n".join(lines)
