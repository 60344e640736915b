"""``ferkit explain``: where on each face the model looked.

Two methods, both giving one (H, W) map per face at the model's input size:

* **Grad-CAM** (Selvaraju et al., 2017) on the last convolution of a PyTorch model: its
  rectified feature maps weighted by the spatially averaged gradient of the explained class's
  logit, summed, rectified and upsampled. One forward and one backward pass per batch; an
  ensemble's map is the mean of its members' maps.
* **Occlusion sensitivity** (Zeiler & Fergus, 2014), model-agnostic: how much the explained
  class's probability drops when a square patch of the face is replaced by its mean gray. It
  needs only the predictor's probabilities, so it works for ONNX files and ensembles too; all
  occluded copies of a batch of faces go through the model in one call.

Faces are found and cropped as ``ferkit predict`` does
(:class:`ferkit.inference.pipeline.Analyzer`).

Example:
    >>> from ferkit.evaluation.explain import explain  # doctest: +SKIP
    >>> results, errors = explain(["photo.jpg"], out="explained")  # doctest: +SKIP
    >>> results[0].method, results[0].saliency.shape  # doctest: +SKIP
    ('gradcam', (48, 48))
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ferkit.data.preprocessing import normalize_batch
from ferkit.faces.alignment import aligned_square
from ferkit.faces.detection import DEFAULT_DETECTOR, FaceBox
from ferkit.utils.errors import FerkitError

#: Explanation methods; ``auto`` is Grad-CAM when a PyTorch model is loaded, else occlusion.
METHODS = ("auto", "gradcam", "occlusion")
#: Occlusion patch side and stride, in pixels of a 48-px face: 11 x 11 = 121 occluded copies
#: per face; an 8-px patch hides about one eye or half the mouth.
OCCLUSION_PATCH = 8
OCCLUSION_STRIDE = 4
#: Faces whose occluded copies go through the model together (121 copies each).
OCCLUSION_FACES_PER_CALL = 16


@dataclass
class FaceExplanation:
    """One face, what the model said about it, and where it looked.

    Attributes:
        label: the most probable class (the class the map explains).
        score: its probability.
        probabilities: every class name → probability.
        method: ``gradcam`` or ``occlusion``.
        saliency: (H, W) float32 in [0, 1], at the model's input size (1: most important).
        raw: the method's own map: Grad-CAM's rectified map before scaling, or occlusion's
            drop in the class's probability (may be negative where hiding a patch helps).
        face: the uint8 (H, W) face crop the model saw.
        box: where the face is in its image (None for a face crop given as an array).
        crop: the square region of the image the crop covers, ``(x, y, side, angle)``: its
            top-left corner and side before it is turned by ``angle`` degrees about its
            centre (clockwise on screen; 0 for a box crop, the face's tilt for an aligned
            one); it may reach outside the image, where edge pixels were repeated.
        source: the file (or ``upload``) it came from.
    """

    label: str
    score: float
    probabilities: dict[str, float]
    method: str
    saliency: np.ndarray
    raw: np.ndarray
    face: np.ndarray
    box: FaceBox | None = None
    crop: tuple[float, float, float, float] | None = None
    source: str | None = None

    def to_dict(self, decimals: int = 4) -> dict:
        """JSON-able form, the maps as nested lists rounded to ``decimals``."""
        return {
            "source": self.source,
            "box": self.box.to_dict() if self.box is not None else None,
            "landmarks": self.box.landmarks_dict() if self.box is not None else None,
            "crop": dict(zip(("x", "y", "side", "angle"), np.round(self.crop, 2).tolist()))
            if self.crop
            else None,
            "emotion": self.label,
            "emotion_score": self.score,
            "probabilities": self.probabilities,
            "method": self.method,
            "saliency": np.round(self.saliency.astype(np.float64), decimals).tolist(),
            "raw": np.round(self.raw.astype(np.float64), decimals + 2).tolist(),
        }


def last_convolution(model: torch.nn.Module) -> torch.nn.Conv2d:
    """The model's last ``Conv2d`` in definition order (Grad-CAM's layer).

    Example:
        >>> from ferkit.models import create_model
        >>> last_convolution(create_model("seed", channels=[4, 8, 6])).out_channels
        6
    """
    convolutions = [module for module in model.modules() if isinstance(module, torch.nn.Conv2d)]
    if not convolutions:
        raise FerkitError(f"{type(model).__name__} has no convolution: use --method occlusion")
    return convolutions[-1]


def _scaled(maps: np.ndarray) -> np.ndarray:
    """Each map's positive part divided by its maximum (all-zero maps stay zero)."""
    positive = np.clip(maps, 0.0, None).astype(np.float32)
    peak = positive.reshape(len(positive), -1).max(axis=1, initial=0.0)
    return positive / np.where(peak > 0, peak, 1.0)[:, None, None]


#: Activation modules whose output after the last convolution is Grad-CAM's feature map.
ACTIVATIONS = (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.LeakyReLU, torch.nn.ELU, torch.nn.GELU,
               torch.nn.SiLU, torch.nn.Hardswish, torch.nn.Mish)  # fmt: skip


def _capture_last_features(model, captured: dict) -> list:
    """Hooks keeping the rectified output of the last convolution that runs.

    Like the Grad-CAM paper's conv5_3 of VGG-16, the feature maps are the last convolution's
    output after its activation (BN and a residual sum may come between): pre-activation maps
    can be negative everywhere, which would rectify the map to nothing. The activation that
    runs next after a convolution is taken (the conv output itself if none does); execution
    order, not definition order, decides, so a ResNet's shortcut convolution is handled.
    """
    last_convolution(model)  # a clear error for a model without one
    # The model may serve other threads meanwhile (ferkit serve): only this thread's passes count.
    state = {"armed": False, "thread": threading.get_ident()}

    def convolution_ran(module, inputs, output):  # noqa: ARG001
        if threading.get_ident() != state["thread"]:
            return None
        state["armed"] = True
        captured["features"] = output
        return output.clone()  # an in-place activation must not overwrite what is kept

    def activation_ran(module, inputs, output):  # noqa: ARG001
        if state["armed"] and threading.get_ident() == state["thread"]:
            state["armed"] = False
            captured["features"] = output
            return output.clone()
        return None

    return [
        module.register_forward_hook(
            convolution_ran if isinstance(module, torch.nn.Conv2d) else activation_ran)
        for module in model.modules()
        if isinstance(module, (torch.nn.Conv2d, *ACTIVATIONS))
    ]  # fmt: skip


def _member_gradcam(model, card, faces, targets, device) -> np.ndarray:
    """Rectified Grad-CAM maps (N, H, W) of one PyTorch model, upsampled to the input."""
    captured = {}
    handles = _capture_last_features(model, captured)
    try:
        with torch.enable_grad():
            images = normalize_batch(faces, card["normalization"]).to(device)
            images.requires_grad_(True)  # a graph exists even if the weights are frozen
            logits = model(images)
            chosen = logits.gather(1, torch.as_tensor(targets, device=device)[:, None]).sum()
            features = captured["features"]
            (gradients,) = torch.autograd.grad(chosen, features)
    finally:
        for handle in handles:
            handle.remove()
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    maps = torch.relu((weights * features).sum(dim=1, keepdim=True)).detach()
    size = faces.shape[-2:]
    maps = torch.nn.functional.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return maps[:, 0].float().cpu().numpy()


def gradcam(predictor, faces, targets=None, batch_size: int = 256) -> np.ndarray:
    """Grad-CAM maps (N, H, W), rectified, for uint8 faces at the model's input size.

    Args:
        predictor: a :class:`ferkit.inference.Predictor` with PyTorch models (an ensemble's
            map is the mean of its members' maps, each scaled to a maximum of 1 first).
        faces: uint8 (N, H, W) face crops.
        targets: class index per face to explain (default: the predicted class).
        batch_size: faces per forward/backward pass.

    Raises:
        FerkitError: for a predictor without a PyTorch model (an ``.onnx`` file).

    Example:
        >>> import numpy as np
        >>> from ferkit import Predictor
        >>> from ferkit.models import create_model
        >>> from ferkit.models.checkpoint import make_model_card
        >>> model = create_model("seed", channels=[4, 4, 4])
        >>> card = make_model_card(model, list("abcdefg"), {"mean": .5, "std": .25})
        >>> gradcam(Predictor(model, card), np.zeros((2, 48, 48), np.uint8)).shape
        (2, 48, 48)
    """
    faces = np.asarray(faces, dtype=np.uint8)
    if not predictor.members:
        raise FerkitError(
            f"{predictor.location}: Grad-CAM needs a PyTorch model; use --method occlusion"
        )
    if targets is None:
        targets = predictor.predict_proba(faces, batch_size).argmax(axis=1)
    targets = np.asarray(targets, dtype=np.int64)
    total = np.zeros(faces.shape, dtype=np.float32)
    for model, card in predictor.members:
        maps = [
            _member_gradcam(model, card, faces[start : start + batch_size],
                            targets[start : start + batch_size], predictor.device)
            for start in range(0, len(faces), batch_size)
        ]  # fmt: skip
        maps = np.concatenate(maps) if maps else total
        # Members' maps have unrelated scales: each counts equally.
        total += _scaled(maps) if len(predictor.members) > 1 else maps
    return total / len(predictor.members)


def occlusion_map(
    predictor,
    faces,
    targets=None,
    patch: int = OCCLUSION_PATCH,
    stride: int = OCCLUSION_STRIDE,
    batch_size: int = 512,
) -> np.ndarray:
    """Occlusion sensitivity (N, H, W): the explained class's probability drop per pixel.

    Each pixel's value is the mean drop over the patches that cover it, a patch being
    replaced by the face's mean gray. Works with any predictor (PyTorch, ONNX, ensemble):
    only ``predictor.predict_proba`` is called, once per group of faces.

    Args:
        predictor: anything with ``predict_proba(uint8 faces, batch_size)``.
        faces: uint8 (N, H, W) face crops.
        targets: class index per face (default: the predicted class).
        patch: side of the square occluder, pixels.
        stride: step between occluder positions, pixels.
        batch_size: faces per forward pass.

    Example:
        >>> import numpy as np
        >>> from ferkit import Predictor
        >>> from ferkit.models import create_model
        >>> from ferkit.models.checkpoint import make_model_card
        >>> model = create_model("seed", channels=[4, 4, 4])
        >>> card = make_model_card(model, list("abcdefg"), {"mean": .5, "std": .25})
        >>> occlusion_map(Predictor(model, card), np.zeros((1, 48, 48), np.uint8)).shape
        (1, 48, 48)
    """
    faces = np.asarray(faces, dtype=np.uint8)
    count, height, width = faces.shape
    if not 0 < patch <= min(height, width) or stride < 1:
        raise FerkitError(f"occlusion patch {patch} / stride {stride}: out of range")
    tops = np.unique(np.r_[np.arange(0, height - patch + 1, stride), height - patch])
    lefts = np.unique(np.r_[np.arange(0, width - patch + 1, stride), width - patch])
    masks = np.zeros((len(tops) * len(lefts), height, width), dtype=bool)
    for index, (top, left) in enumerate((top, left) for top in tops for left in lefts):
        masks[index, top : top + patch, left : left + patch] = True
    coverage = masks.sum(axis=0)
    result = np.zeros(faces.shape, dtype=np.float32)
    for start in range(0, count, OCCLUSION_FACES_PER_CALL):
        group = faces[start : start + OCCLUSION_FACES_PER_CALL]
        fill = np.rint(group.reshape(len(group), -1).mean(axis=1)).astype(np.uint8)
        occluded = np.where(masks[None], fill[:, None, None, None], group[:, None])
        probabilities = predictor.predict_proba(
            np.concatenate([group, occluded.reshape(-1, height, width)]), batch_size
        )
        base, variants = probabilities[: len(group)], probabilities[len(group) :]
        chosen = base.argmax(axis=1) if targets is None else targets[start : start + len(group)]
        rows = np.arange(len(group))
        drops = base[rows, chosen][:, None] - variants.reshape(len(group), len(masks), -1)[
            rows, :, chosen]  # fmt: skip
        result[start : start + len(group)] = np.tensordot(drops, masks, axes=(1, 0)) / coverage
    return result


def explain_faces(predictor, faces, method: str = "auto", batch_size: int = 256):
    """Predictions and maps for uint8 face crops (N, H, W) at the model's input size.

    Returns:
        One :class:`FaceExplanation` per face (without box or source).

    Example:
        >>> import numpy as np
        >>> from ferkit import Predictor
        >>> from ferkit.models import create_model
        >>> from ferkit.models.checkpoint import make_model_card
        >>> model = create_model("seed", channels=[4, 4, 4])
        >>> card = make_model_card(model, list("abcdefg"), {"mean": .5, "std": .25})
        >>> explained = explain_faces(Predictor(model, card), np.zeros((1, 48, 48), np.uint8))
        >>> explained[0].method, explained[0].saliency.shape
        ('gradcam', (48, 48))
    """
    if method not in METHODS:
        raise FerkitError(f"unknown explanation method {method!r}; choose one of: "
                          f"{', '.join(METHODS)}")  # fmt: skip
    if method == "auto":
        method = "gradcam" if predictor.members else "occlusion"
    faces = np.asarray(faces, dtype=np.uint8).reshape(-1, *np.shape(faces)[-2:])
    if len(faces) == 0:
        return []
    probabilities = predictor.predict_proba(faces, batch_size)
    targets = probabilities.argmax(axis=1)
    if method == "gradcam":
        raw = gradcam(predictor, faces, targets, batch_size)
    else:
        raw = occlusion_map(predictor, faces, targets, batch_size=batch_size)
    saliency = _scaled(raw)
    names = predictor.class_names
    return [
        FaceExplanation(names[target], float(row[target]),
                        {name: float(value) for name, value in zip(names, row)}, method,
                        saliency[index], raw[index], faces[index])
        for index, (row, target) in enumerate(zip(probabilities, targets))
    ]  # fmt: skip


def explain_image(analyzer, image, method: str = "auto", source: str = "<array>"):
    """Detect, crop and explain every face of one image, as ``ferkit predict`` crops them.

    Args:
        analyzer: a :class:`ferkit.inference.pipeline.Analyzer` (model plus detector, loaded once).
        image: uint8 (H, W) gray or (H, W, 3) RGB.
        method: auto | gradcam | occlusion.
        source: a name for the image, kept in each explanation.

    Example:
        >>> from ferkit.inference.pipeline import Analyzer  # doctest: +SKIP
        >>> explain_image(Analyzer("default"), photo)[0].label  # doctest: +SKIP
        'Happy'
    """
    image = np.asarray(image)
    boxes, crops = (found[0] for found in analyzer.find_faces([image])[:2])  # predict's crops
    height, width = image.shape[:2]
    squares = []
    for box in boxes:
        if analyzer.detector_name == "none":  # the image is the crop (its centred square)
            side = min(width, height)
            squares.append(((width - side) // 2, (height - side) // 2, side, 0.0))
        elif analyzer.align and box.landmarks is not None:  # aligned: a turned square
            squares.append(aligned_square(box.landmarks))
        else:  # the same square crop_face takes
            side = max(1, round(max(box.width, box.height) * (1.0 + analyzer.margin)))
            squares.append((round(box.x + box.width / 2 - side / 2),
                            round(box.y + box.height / 2 - side / 2), side, 0.0))  # fmt: skip
    size = analyzer.predictor.input_size
    faces = np.array(crops, dtype=np.uint8).reshape(-1, size, size)  # (0, size, size): none
    explanations = explain_faces(analyzer.predictor, faces, method, analyzer.batch_size)
    for explanation, box, square in zip(explanations, boxes, squares):
        explanation.box, explanation.crop, explanation.source = box, square, source
    return explanations


def overlay(face: np.ndarray, saliency: np.ndarray, size: int = 192, opacity: float = 0.5):
    """An RGB picture of the face with the map over it (jet colours: red = most important).

    Example:
        >>> import numpy as np
        >>> overlay(np.zeros((48, 48), np.uint8), np.ones((48, 48))).shape
        (192, 192, 3)
    """
    import cv2
    from matplotlib import colormaps

    gray = cv2.resize(np.asarray(face, np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    heat = cv2.resize(np.asarray(saliency, np.float32), (size, size),
                      interpolation=cv2.INTER_LINEAR)  # fmt: skip
    colors = colormaps["jet"](np.clip(heat, 0.0, 1.0))[..., :3] * 255.0
    blended = (1.0 - opacity) * gray[..., None].astype(np.float32) + opacity * colors
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _write_face(folder: Path, stem: str, explanation: FaceExplanation) -> list[Path]:
    """``STEM_<method>.png`` (overlay beside the face) and ``STEM_<method>.json`` (maps)."""
    from PIL import Image

    from ferkit.utils.io import atomic_write, write_json

    face = overlay(explanation.face, explanation.saliency, opacity=0.0)
    picture = overlay(explanation.face, explanation.saliency)
    side_by_side = Image.fromarray(np.concatenate([face, picture], axis=1))
    image_path = folder / f"{stem}_{explanation.method}.png"
    atomic_write(image_path, lambda temporary: side_by_side.save(temporary, format="PNG"))
    json_path = write_json(folder / f"{stem}_{explanation.method}.json", explanation.to_dict())
    return [image_path, json_path]


def explain(
    inputs,
    model: str | os.PathLike = "default",
    out: str | os.PathLike = "explanations",
    method: str = "auto",
    detector: str = DEFAULT_DETECTOR,
    detector_model: str | os.PathLike | None = None,
    margin: float = 0.2,
    device: str = "auto",
    backend: str = "auto",
    offline: bool = False,
    face_check: bool = True,
    align: bool = True,
) -> tuple[list[FaceExplanation], list[str]]:
    """Explain every face in images, folders and globs; ``ferkit explain``'s Python twin.

    Per face, writes ``OUT/<image>_face<k>_<method>.png`` (the crop and its overlay side by
    side) and ``.json`` (prediction, box, crop square, the scaled map and the method's raw
    map). Unreadable files and videos are reported in the errors; the others still run.

    Returns:
        (explanations, errors).

    Example:
        >>> found, errors = explain(["faces/"], "runs/demo", "out")  # doctest: +SKIP
        >>> sorted(path.name for path in Path("out").iterdir())[:2]  # doctest: +SKIP
        ['happy_1_face1_gradcam.json', 'happy_1_face1_gradcam.png']
    """
    from ferkit.data.preprocessing import read_image
    from ferkit.inference.pipeline import VIDEO_EXTENSIONS, Analyzer, expand_inputs

    if method not in METHODS:
        raise FerkitError(f"--method {method}: choose one of {', '.join(METHODS)}")
    files, errors = expand_inputs(inputs)
    # The crops predict classifies (aligned by default): the explained answer is predict's.
    analyzer = Analyzer(model, detector, detector_model, margin, device, None, 256, backend,
                        offline, align=align, face_check=face_check)  # fmt: skip
    folder, used, results = Path(out), set(), []
    for path in files:
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            errors.append(f"{path}: a video; explain takes images (extract frames first)")
            continue
        try:
            explanations = explain_image(analyzer, read_image(path), method, str(path))
        except FerkitError as error:
            errors.append(str(error))
            continue
        if not explanations:
            errors.append(f"{path}: no face found")
        base = stem = re.sub(r"[^\w.-]", "_", path.stem)
        number = 1
        while stem in used:  # same file name in different folders: never overwrite
            number += 1
            stem = f"{base}_{number}"
        used.add(stem)
        for index, explanation in enumerate(explanations, start=1):
            _write_face(folder, f"{stem}_face{index}", explanation)
            results.append(explanation)
    return results, errors
