"""ferkit: facial expression recognition toolkit.

Train, evaluate and use emotion classifiers for 48x48 grayscale faces (FER2013 layout).

Example:
    >>> import ferkit
    >>> ferkit.__version__  # doctest: +SKIP
    '0.1.0'
"""

__version__ = "0.1.0"

__all__ = ["__version__", "Predictor"]


def __getattr__(name):
    # Lazy so that `import ferkit` (and `ferkit --version`) does not import torch.
    if name == "Predictor":
        from ferkit.inference import Predictor

        return Predictor
    raise AttributeError(f"module 'ferkit' has no attribute {name!r}")
