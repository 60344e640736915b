"""ferkit: facial expression recognition toolkit.

Train, evaluate and use emotion classifiers for 48x48 grayscale faces (FER2013 layout).

Example:
    >>> import ferkit
    >>> ferkit.__version__  # doctest: +SKIP
    '0.1.0'
"""

__version__ = "0.1.0"

__all__ = ["__version__", "Predictor", "Prediction", "Analyzer", "analyze"]

#: Lazy exports: name → the module that defines it.
_EXPORTS = {
    "Predictor": "ferkit.inference.predictor",
    "Prediction": "ferkit.inference.results",
    "Analyzer": "ferkit.inference.pipeline",
    "analyze": "ferkit.inference.pipeline",
}


def __getattr__(name):
    # Lazy so that `import ferkit` (and `ferkit --version`) does not import torch.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ferkit' has no attribute {name!r}")
