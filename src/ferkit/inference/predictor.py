"""``Predictor``: a trained model plus the eval preprocessing, for face crops.

A predictor is built once over one engine (:mod:`ferkit.inference.engines`): PyTorch fp32
(``torch``), PyTorch bfloat16 (``bf16``), ONNX Runtime fp32 (``onnx``) or INT8 (``int8``), or
``auto``'s choice; an exported ``.onnx`` file always runs with ONNX Runtime.

Example:
    >>> from ferkit import Predictor  # doctest: +SKIP
    >>> predictor = Predictor.from_run("runs/demo", backend="bf16")  # doctest: +SKIP
    >>> predictor.predict("face.png").label  # doctest: +SKIP
    'Happy'
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ferkit.data.preprocessing import read_image, to_face_array
from ferkit.inference.abstention import check_min_confidence
from ferkit.inference.calibration import temperature_of
from ferkit.inference.engines import OnnxEngine, TorchEngine, create_engine
from ferkit.inference.graph import ProbabilityGraph
from ferkit.inference.results import Prediction, predictions_from
from ferkit.models.runtime import resolve_device
from ferkit.utils.errors import FerkitError


class Predictor:
    """Classify already-cropped faces (any size, colour or gray) with a trained model.

    The model loads once; every call applies the one eval preprocessing
    (:func:`ferkit.data.preprocessing.to_face_array`) and runs the engine chosen at construction.

    Args:
        model: a PyTorch model (None: the bundled default model).
        card: its model card (or an ensemble's card with ``extra_members``).
        device: the PyTorch device.
        location: where the model came from (messages, the cache, ``location_folder``).
        tta: a test-time augmentation instead of the card's.
        extra_members: more (model, card) pairs: an ensemble, whose probabilities average.
        backend: the engine (:data:`ferkit.utils.choices.BACKENDS`; see :meth:`from_run`).
        engine: an engine already made (:meth:`from_onnx`); then no PyTorch model is used.
        name: the location as typed (``auto`` picks INT8 for a bundled name; messages).

    Example:
        >>> import numpy as np
        >>> from ferkit.models import create_model
        >>> from ferkit.models.checkpoint import make_model_card
        >>> model = create_model("classic", channels=[4, 4, 4]).eval()
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
        backend: str = "torch",
        engine: OnnxEngine | None = None,
        name: str | None = None,
    ):
        self.location = Path(location) if location is not None else None
        # The card's test-time augmentation unless this overrides it.
        self.tta = tta
        #: Why this engine runs (from_run), e.g. "auto: ONNX Runtime fp32 (...)".
        self.backend_reason = None
        if engine is not None:  # an exported file run by ONNX Runtime (from_onnx): no torch model
            self.engine, self.graph, self.members = engine, None, []
            self.model, self.card, self.device = None, engine.card, torch.device("cpu")
            # An ONNX file's own graph and metadata have the last word on classes and size.
            self.class_names, self.input_size = engine.class_names, engine.input_size
            self.normalization = self.card.get("normalization")
            return
        if model is None:  # Predictor(): the bundled default model
            from ferkit.models import hub

            loaded = hub.load("default", device=device)
            (model, card), self.location = loaded.members[0], loaded.path
        # An ensemble is several (model, card) members whose probabilities are averaged.
        self.members = [(model, card)] + list(extra_members or [])
        self.graph = ProbabilityGraph(self.members, card, tta)
        self.model, self.card, self.device = model, card, torch.device(device)
        self.class_names, self.input_size = self.graph.class_names, self.graph.input_size
        self.normalization = card.get("normalization")
        self.engine, self.backend_reason = create_engine(
            self.graph, backend, self.device, name if name is not None else self.location
        )
        # The models live where the engine runs them (ONNX Runtime's PyTorch fallback: CPU).
        engine = self.engine if isinstance(self.engine, TorchEngine) else self.engine.fallback
        self.device = engine.device

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
        engine = OnnxEngine(path)
        baked = sorted(set(engine.tta))
        if tta is not None and baked != [tta]:
            raise FerkitError(
                f"{path}: the test-time augmentation is inside the exported graph "
                f"({', '.join(baked) or 'unknown'}); re-export with --tta {tta} to change it"
            )
        tta = baked[0] if len(baked) == 1 else None
        return cls(location=path, tta=tta, engine=engine)

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
            device: auto | cpu | cuda | mps (PyTorch backends).
            tta: override the card's test-time augmentation.
            backend: ``torch`` (fp32), ``bf16`` (bfloat16 autocast and channels_last: several
                times faster on CPUs with AVX-512-BF16/AMX and on GPUs; probabilities within
                about 1e-2 of fp32), ``onnx`` (ONNX Runtime on the CPU: the model is exported
                once, parity-checked, and cached in the user cache), ``int8`` (its INT8
                variant, see :mod:`ferkit.inference.int8`) or ``auto`` (ONNX Runtime when it is
                installed and the device is the CPU, INT8 for a bundled model on a CPU with
                VNNI/AMX, else PyTorch).

        Raises:
            FerkitError: for an unknown backend, a location without a model, or ``bf16`` for
                an ONNX file.

        Example:
            >>> Predictor.from_run("small", backend="bf16").backend  # doctest: +SKIP
            'bf16'
        """
        from ferkit.models import hub
        from ferkit.utils.choices import BACKENDS

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
        return cls(first_model, loaded.card, resolved, loaded.path, tta, others, backend,
                   name=str(location))  # fmt: skip

    @property
    def backend(self) -> str:
        """The engine: ``torch``, ``bf16``, ``onnx`` or ``int8``."""
        return self.engine.backend

    @property
    def quantization(self) -> str | None:
        """``"int8"`` for a quantized ONNX file or INT8 variant, else None."""
        return self.engine.quantization

    @property
    def is_ensemble(self) -> bool:
        """True for an ensemble folder (several members, one ``ensemble.json``)."""
        from ferkit.models.ensemble import ENSEMBLE_FORMAT

        return self.card.get("format") == ENSEMBLE_FORMAT

    @property
    def temperature(self) -> float:
        """The temperature that ``ferkit calibrate`` fits for this model (1.0: none yet)."""
        return temperature_of(self.card)

    def temperatures(self, calibrated: bool = True) -> tuple[list[float], float]:
        """(each member's temperature, the ensemble's) for
        :func:`ferkit.inference.calibration.combine_probabilities` (see
        :meth:`ProbabilityGraph.temperatures`)."""
        if self.graph is None:
            raise FerkitError(f"{self.location}: an ONNX file has its temperatures in its graph")
        return self.graph.temperatures(calibrated)

    @property
    def location_folder(self) -> Path:
        """The folder the model came from (where evaluate writes by default)."""
        return self.location.parent if self.location is not None else Path.cwd()

    def predict_proba(self, faces, batch_size: int = 512, calibrated: bool = True) -> np.ndarray:
        """Probabilities (N, classes) for faces already at the model's size (uint8 N×H×W).

        Args:
            faces: uint8 (N, H, W).
            batch_size: faces per forward pass.
            calibrated: apply the card's temperature (see :mod:`ferkit.inference.calibration`);
                False gives the raw probabilities a temperature is fitted on.

        Raises:
            FerkitError: ``calibrated=False`` for an exported ONNX file with a temperature
                inside its graph (a PyTorch model run by ONNX Runtime answers with PyTorch
                then).

        Example:
            >>> predictor.predict_proba(np.zeros((2, 48, 48), np.uint8)).shape  # doctest: +SKIP
            (2, 7)
        """
        return self.engine.predict_proba(np.asarray(faces, dtype=np.uint8), batch_size, calibrated)

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
            A :class:`~ferkit.inference.results.Prediction`, or a list of them for a list.

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
        sources = [str(item) if isinstance(item, (str, os.PathLike)) else None for item in items]
        results: list[Prediction] = predictions_from(
            probabilities, self.class_names, min_confidence, sources=sources
        )
        return results[0] if single else results
