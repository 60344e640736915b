"""Inference: faces in, emotions out.

* :mod:`~ferkit.inference.graph`: :class:`ProbabilityGraph`, the one computation from face
  pixels to calibrated probabilities (normalise → TTA views → members → softmax), which the
  PyTorch engines run and :mod:`ferkit.export` exports.
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

import importlib

#: Public name → the submodule that defines it.
_EXPORTS = {
    "ProbabilityGraph": "graph",
    "TorchEngine": "engines",
    "OnnxEngine": "engines",
    "create_engine": "engines",
    "Predictor": "predictor",
    "Prediction": "results",
    "MediaResult": "results",
    "predictions_from": "results",
    "write_csv": "results",
    "annotate": "results",
    "Analyzer": "pipeline",
    "analyze": "pipeline",
    "expand_inputs": "pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    # Lazy (PEP 562): the submodules import one another, never this package's namespace.
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"ferkit.inference.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ferkit.inference' has no attribute {name!r}")
