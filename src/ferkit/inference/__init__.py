"""Inference: faces in, emotions out.

* :mod:`~ferkit.inference.graph`: :class:`ProbabilityGraph`, the one computation from face
  pixels to calibrated probabilities (normalise → TTA views → members → softmax), which the
  PyTorch engines run and :mod:`ferkit.inference.export` exports.
* :mod:`~ferkit.inference.engines`: PyTorch fp32/bf16 and ONNX Runtime fp32/INT8 engines and
  ``--backend auto``'s choice.
* :mod:`~ferkit.inference.predictor`: :class:`Predictor`, built once over an engine.
* :mod:`~ferkit.inference.results`: :class:`Prediction` (one face), :class:`MediaResult` (one
  image or frame), CSV and annotated pictures.
* :mod:`~ferkit.inference.pipeline`: detect → align → crop → classify → track
  (:class:`Analyzer`, :func:`analyze`: ``ferkit predict``).

Names load on first use, so ``import ferkit.inference.graph`` pulls in nothing else.

Example:
    >>> from ferkit.inference import Predictor  # doctest: +SKIP
    >>> Predictor.from_run("small", backend="onnx").predict("face.png").label  # doctest: +SKIP
    'Happy'
"""

from ferkit.utils.lazy import lazy_attributes

#: Public name → the submodule that defines it.
_EXPORTS = {
    "ProbabilityGraph": "ferkit.inference.graph",
    "TorchEngine": "ferkit.inference.engines",
    "OnnxEngine": "ferkit.inference.engines",
    "create_engine": "ferkit.inference.engines",
    "Predictor": "ferkit.inference.predictor",
    "Prediction": "ferkit.inference.results",
    "MediaResult": "ferkit.inference.results",
    "predictions_from": "ferkit.inference.results",
    "write_csv": "ferkit.inference.results",
    "annotate": "ferkit.inference.results",
    "Analyzer": "ferkit.inference.pipeline",
    "analyze": "ferkit.inference.pipeline",
    "expand_inputs": "ferkit.inference.pipeline",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_attributes(__name__, _EXPORTS)
