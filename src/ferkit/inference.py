"""``Predictor``: a trained model plus the eval preprocessing, for face crops.

Example:
    >>> from ferkit import Predictor  # doctest: +SKIP
    >>> predictor = Predictor.from_run("runs/demo")  # doctest: +SKIP
    >>> predictor.predict("face.png").label  # doctest: +SKIP
    'Happy'
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ferkit.abstention import check_min_confidence, decide
from ferkit.calibration import calibration_of, combine_probabilities, is_calibrated, temperature_of
from ferkit.choices import BACKENDS
from ferkit.errors import FerkitError
from ferkit.preprocessing import read_image, to_face_array
from ferkit.quiet import announce
from ferkit.runtime import batched_logits, resolve_device

# The inference engines of a Predictor (ferkit.choices.BACKENDS): PyTorch fp32, ONNX Runtime
# fp32, ``auto`` (ONNX Runtime when installed and on the CPU, else PyTorch; for a bundled model
# on a CPU with VNNI/AMX, its INT8 variant, see ferkit.int8), ``bf16`` (PyTorch with bfloat16
# autocast and channels_last: several times faster on CPUs with AVX-512-BF16/AMX and on GPUs;
# probabilities differ from fp32 by about 1e-2 at most), ``int8`` (ONNX Runtime INT8 variant,
# built once into the cache). An exported ``.onnx`` file (fp32 or INT8, see ``ferkit export``)
# always runs with ONNX Runtime, whatever the backend but ``bf16``.


def _onnxruntime_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) for name in ("onnxruntime", "onnx", "onnxscript"))


@dataclass
class Prediction:
    """The emotion of one face.

    Attributes:
        label: the most probable class name, or ``"uncertain"`` when its probability is below
            the ``min_confidence`` asked for.
        score: the top probability (calibrated when the model card has a temperature).
        probabilities: every class name → probability (they sum to 1).
        source: the file it came from, when it came from a file.
        margin: top-1 minus top-2 probability.
        uncertain: True when the model abstained (``label == "uncertain"``).
        best_guess: the most probable class name, even when uncertain.
    """

    label: str
    score: float
    probabilities: dict[str, float] = field(default_factory=dict)
    source: str | None = None
    margin: float = 0.0
    uncertain: bool = False
    best_guess: str = ""

    @property
    def confidence(self) -> float:
        """The top probability (the same as ``score``)."""
        return self.score

    def to_dict(self) -> dict:
        """JSON-able form."""
        return {
            "source": self.source,
            "label": self.label,
            "score": self.score,
            "confidence": self.score,
            "margin": self.margin,
            "uncertain": self.uncertain,
            "best_guess": self.best_guess,
            "probabilities": self.probabilities,
        }


def _auto_backend(location, device) -> tuple[str, str]:
    """``--backend auto``: (the backend, why) for a model on ``device``."""
    from ferkit.int8 import cpu_runs_int8_fast, int8_instructions
    from ferkit.pretrained import BUNDLED_MODELS

    if device.type != "cpu" or not _onnxruntime_installed():
        return "torch", "auto: PyTorch (not the CPU, or ONNX Runtime is not installed)"
    if str(location) in BUNDLED_MODELS and not Path(location).exists():
        if cpu_runs_int8_fast():
            instructions = ", ".join(int8_instructions())
            return "int8", f"auto: ONNX Runtime INT8 (bundled model; this CPU has {instructions})"
        return "onnx", "auto: ONNX Runtime fp32 (this CPU has no VNNI/AMX for fast INT8)"
    return "onnx", "auto: ONNX Runtime fp32 (INT8 is automatic for the bundled models only)"


class Predictor:
    """Classify already-cropped faces (any size, colour or gray) with a trained model.

    The model loads once; every call applies the one eval preprocessing
    (:func:`ferkit.preprocessing.to_face_array` then :func:`normalize_batch`).

    Example:
        >>> import numpy as np
        >>> from ferkit.models import create_model
        >>> from ferkit.checkpoint import make_model_card
        >>> model = create_model("seed", channels=[4, 4, 4]).eval()
        >>> names = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
        >>> predictor = Predictor(model, make_model_card(model, names, {"mean": .5, "std": .25}))
        >>> prediction = predictor.predict(np.zeros((60, 60, 3), np.uint8))
        >>> prediction.label in names, round(sum(prediction.probabilities.values()), 4)
        (True, 1.0)
    """

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        card: dict | None = None,
        device="cpu",
        location=None,
        tta=None,
        extra_members: list[tuple[torch.nn.Module, dict]] | None = None,
        onnx=None,
    ):
        if onnx is not None:  # an exported file run by ONNX Runtime (from_onnx): no torch model
            members, card = [], onnx.card
        else:
            if model is None:  # Predictor(): the bundled default model
                from ferkit import hub

                loaded = hub.load("default", device=device)
                (model, card), location = loaded.members[0], loaded.path
            # An ensemble is several (model, card) members whose probabilities are averaged.
            members = [(model, card)] + list(extra_members or [])
            for member_model, member_card in members:
                member_model.to(device).eval()
                if list(member_card["class_names"]) != list(card["class_names"]):
                    raise FerkitError("ensemble members must share the same class names")
                if member_card["input_size"] != card["input_size"]:
                    raise FerkitError("ensemble members must share the same input size")
        self.device = torch.device("cpu" if onnx is not None else device)
        self.members = members
        self.model = model
        self.card = card
        # An ONNX file's own graph and metadata have the last word on classes and input size.
        self.class_names = tuple(onnx.class_names if onnx is not None else card["class_names"])
        self.normalization = card.get("normalization")
        self.input_size = onnx.input_size if onnx is not None else int(card["input_size"][0])
        self.location = Path(location) if location is not None else None
        # The card says which test-time augmentation the model was selected with.
        self.tta = tta
        # An OnnxPredictor once use_onnx_runtime() switched the backend (or from_onnx).
        self.onnx = onnx
        self.backend = "torch" if onnx is None else "onnx"
        self.autocast_dtype = None  # torch.bfloat16 once use_bfloat16() switched the backend
        # "int8" for a quantized ONNX file (from_onnx) or INT8 variant (use_onnx_runtime)
        self.quantization = None if onnx is None else onnx.quantization
        #: Why this backend runs (from_run), e.g. "auto: ONNX Runtime fp32 (...)".
        self.backend_reason = None

    @classmethod
    def from_onnx(cls, path: str | os.PathLike, tta: str | None = None) -> Predictor:
        """A predictor for an exported ``.onnx`` file (fp32 or INT8), run by ONNX Runtime.

        The file's graph holds the normalisation, TTA and softmax, and its metadata the class
        names and model card; no PyTorch model is loaded (``predictor.model`` is None).

        Raises:
            FerkitError: for a file that is not a ferkit export, or a ``tta`` other than the
                one inside the graph.

        Example:
            >>> Predictor.from_onnx("model_int8.onnx").quantization  # doctest: +SKIP
            'int8'
        """
        from ferkit.export import OnnxPredictor

        onnx = OnnxPredictor(path)
        baked = sorted(set(onnx.tta))
        if tta is not None and baked != [tta]:
            raise FerkitError(
                f"{path}: the test-time augmentation is inside the exported graph "
                f"({', '.join(baked) or 'unknown'}); re-export with --tta {tta} to change it"
            )
        tta = baked[0] if len(baked) == 1 else None
        return cls(device="cpu", location=path, tta=tta, onnx=onnx)

    @classmethod
    def from_run(
        cls,
        location: str | os.PathLike,
        device: str = "auto",
        tta: str | None = None,
        backend: str = "torch",
    ) -> Predictor:
        """Load the best model of a run folder (or a checkpoint, ensemble or bundled name).

        Args:
            location: run folder, ``.safetensors`` checkpoint, ensemble folder, ``default``, or
                an exported ``.onnx`` file (see :meth:`from_onnx`; runs with ONNX Runtime).
            device: auto | cpu | cuda | mps (PyTorch backend).
            tta: override the card's test-time augmentation.
            backend: ``torch``, ``onnx`` (ONNX Runtime on the CPU: the model is exported once,
                parity-checked, and cached in the user cache), ``auto`` (ONNX Runtime when it
                is installed and the device is the CPU, else PyTorch) or ``bf16`` (PyTorch
                with bfloat16 autocast, see :meth:`use_bfloat16`).

        Example:
            >>> predictor = Predictor.from_run("runs/demo")  # doctest: +SKIP
        """
        from ferkit import hub

        if backend not in BACKENDS:
            raise FerkitError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        if hub.locate(location)[0] == "onnx":
            if backend == "bf16":
                raise FerkitError(
                    f"{location}: an ONNX file runs with ONNX Runtime; --backend bf16 needs a "
                    "PyTorch model (run folder, checkpoint or bundled name)"
                )
            return cls.from_onnx(location, tta=tta)
        resolved = resolve_device(device)
        loaded = hub.load(location, device=resolved)  # a checkpoint or an ensemble's members
        (first_model, _), others = loaded.members[0], loaded.members[1:]
        predictor = cls(first_model, loaded.card, resolved, loaded.path, tta, others)
        reason = None
        if backend == "auto":
            backend, reason = _auto_backend(location, resolved)
        if backend in ("onnx", "int8"):
            try:
                predictor.use_onnx_runtime(quantize="int8" if backend == "int8" else None)
            except FerkitError as error:
                if reason is None or backend != "int8":
                    raise
                predictor.use_onnx_runtime()  # auto never fails for want of INT8
                reason = f"auto: ONNX Runtime fp32 (the INT8 variant was refused: {error})"
        if backend == "bf16":
            predictor.use_bfloat16()
        predictor.backend_reason = reason or f"--backend {backend}"
        return predictor

    def use_bfloat16(self) -> Predictor:
        """Run PyTorch inference in bfloat16 autocast with channels_last memory from now on.

        On CPUs with AVX-512-BF16 or AMX (and on GPUs) this is several times faster than fp32
        (docs/benchmarks.md); probabilities differ from fp32 by about 1e-2 at most, so the
        top emotion can change only for near ties. fp32 stays the default: its results are
        reproducible across machines.

        Example:
            >>> Predictor().use_bfloat16().backend
            'bf16'
        """
        self._need_torch_model("bf16")
        for model, _ in self.members:
            model.to(memory_format=torch.channels_last)
        self.onnx = None
        self.autocast_dtype = torch.bfloat16
        self.backend = "bf16"
        return self

    def use_onnx_runtime(self, quantize: str | None = None) -> Predictor:
        """Run inference with ONNX Runtime from now on (same probabilities within 1e-4).

        The ONNX file is exported once per model content and TTA, parity-checked against this
        predictor, and kept in the user cache (``$FERKIT_CACHE_DIR/onnx``). ``quantize="int8"``
        uses the model's INT8 variant instead (:func:`ferkit.int8.build_int8_variant`: built
        once, kept only if it passes the agreement check).
        """
        if self.model is None and self.onnx is not None:
            return self  # loaded from an .onnx file: already ONNX Runtime
        import hashlib

        from ferkit.data.cache import default_cache_dir
        from ferkit.export import OnnxPredictor, export_predictor

        digest = hashlib.sha256()
        for model, card in self.members:
            digest.update(json.dumps(card, sort_keys=True, default=str).encode())
            for name, tensor in model.state_dict().items():
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        digest.update(str(self.tta).encode())
        digest.update(json.dumps(self.temperatures(), default=repr).encode())
        if quantize is not None:
            from ferkit.int8 import CALIBRATION_RECIPE, cached_int8_variant

            digest.update(f"{quantize} {CALIBRATION_RECIPE}".encode())
        path = default_cache_dir() / "onnx" / f"{digest.hexdigest()[:32]}.onnx"
        if not path.is_file():
            if quantize is None:
                # One line on the first use: the export takes seconds; the user should know why.
                announce(
                    f"preparing the model for ONNX Runtime (first use; cached in {path.parent})"
                )
                export_predictor(self, path, name=str(self.location or "model"))
            else:
                cached_int8_variant(self, path)
        self.onnx = OnnxPredictor(path)
        self.backend = "onnx" if quantize is None else quantize
        self.quantization = self.onnx.quantization
        return self

    def _need_torch_model(self, what: str) -> None:
        if self.model is None:
            raise FerkitError(f"{self.location}: {what} needs a PyTorch model, not an ONNX file")

    @property
    def is_ensemble(self) -> bool:
        """True for an ensemble folder (several members, one ``ensemble.json``)."""
        from ferkit.ensemble import ENSEMBLE_FORMAT

        return self.card.get("format") == ENSEMBLE_FORMAT

    @property
    def temperature(self) -> float:
        """The temperature that ``ferkit calibrate`` fits for this model (1.0: none yet)."""
        return temperature_of(self.card)

    def temperatures(self, calibrated: bool = True) -> tuple[list, object]:
        """(each member's calibration, the ensemble's) for :func:`combine_probabilities`.

        A calibration is a temperature or an affine map (vector/Dirichlet scaling).
        ``calibrated=False`` leaves out the calibration of :attr:`card`: a model's own, or an
        ensemble's outer one (its members keep theirs).
        """
        members = [calibration_of(card) for _, card in self.members]
        if not self.is_ensemble:
            return (members if calibrated else [1.0] * len(members)), 1.0
        return members, calibration_of(self.card) if calibrated else 1.0

    @property
    def location_folder(self) -> Path:
        """The folder the model came from (where evaluate writes by default)."""
        return self.location.parent if self.location is not None else Path.cwd()

    @torch.no_grad()
    def predict_proba(self, faces, batch_size: int = 512, calibrated: bool = True) -> np.ndarray:
        """Probabilities (N, classes) for faces already at the model's size (uint8 N×H×W).

        Args:
            faces: uint8 (N, H, W).
            batch_size: faces per forward pass.
            calibrated: apply the card's temperature (see :mod:`ferkit.calibration`); False
                gives the raw probabilities a temperature is fitted on.

        Raises:
            FerkitError: ``calibrated=False`` for an exported ONNX file with a temperature
                inside its graph (a PyTorch model switched to ONNX Runtime answers with
                PyTorch then).

        Example:
            >>> predictor.predict_proba(np.zeros((2, 48, 48), np.uint8)).shape  # doctest: +SKIP
            (2, 7)
        """
        faces = np.asarray(faces, dtype=np.uint8)
        # The ONNX graph has the temperature inside; without it, only PyTorch can answer.
        use_onnx = self.onnx is not None and (calibrated or not is_calibrated(self.card))
        if self.onnx is not None and not use_onnx and self.model is None:
            raise FerkitError(
                f"{self.location}: the ONNX graph applies the temperature; uncalibrated "
                "probabilities need the PyTorch model it was exported from"
            )
        if len(faces) == 0:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        if use_onnx:
            return self.onnx.predict_proba(faces, batch_size)
        member_logits = []
        for model, card in self.members:
            # fp32 unless use_bfloat16(): fp32 predictions are reproducible across machines.
            tta = self.tta if self.tta is not None else card.get("tta", "none")
            member_logits.append(batched_logits(
                model, faces, card["normalization"], batch_size, self.device,
                self.autocast_dtype, self.autocast_dtype is not None, tta,
            ))  # fmt: skip
        return combine_probabilities(member_logits, *self.temperatures(calibrated)).numpy()

    def _face(self, item) -> np.ndarray:
        if isinstance(item, (str, os.PathLike)):
            item = read_image(item)
        return to_face_array(item, self.input_size)

    def predict(self, inputs, batch_size: int = 512, min_confidence: float | None = None):
        """Classify one face or a list of faces.

        Args:
            inputs: a path, a PIL image or an array (H, W) / (H, W, 3 RGB), or a list of them.
            batch_size: faces per forward pass.
            min_confidence: label a face ``"uncertain"`` when its top probability is below
                this (its probabilities and ``best_guess`` are still given); None: never.

        Returns:
            A :class:`Prediction`, or a list of them for a list input.

        Raises:
            FerkitError: naming a file that is missing or not an image.

        Example:
            >>> predictor.predict("face.png").label  # doctest: +SKIP
            'Happy'
            >>> [p.label for p in predictor.predict(["a.png", "b.png"])]  # doctest: +SKIP
            ['Happy', 'Sad']
        """
        check_min_confidence(min_confidence)
        single = not isinstance(inputs, (list, tuple))
        items = [inputs] if single else list(inputs)
        faces = np.stack([self._face(item) for item in items]) if items else np.zeros((0, 48, 48))
        probabilities = self.predict_proba(faces, batch_size)
        decisions = decide(probabilities, self.class_names, min_confidence)
        results = []
        for item, row, decision in zip(items, probabilities, decisions):
            results.append(
                Prediction(
                    label=decision.label,
                    score=decision.confidence,
                    probabilities={
                        name: float(value) for name, value in zip(self.class_names, row)
                    },
                    source=str(item) if isinstance(item, (str, os.PathLike)) else None,
                    margin=decision.margin,
                    uncertain=decision.uncertain,
                    best_guess=decision.best_guess,
                )
            )
        return results[0] if single else results
