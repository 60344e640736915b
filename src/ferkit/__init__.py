"""ferkit: facial expression recognition toolkit.

Train, evaluate and use emotion classifiers for 48x48 grayscale faces (FER2013 layout).

Example:
    >>> import ferkit
    >>> ferkit.__version__
    '0.2.0'
"""

from ferkit.utils import compat
from ferkit.utils.lazy import lazy_attributes

__version__ = "0.2.0"

__all__ = ["__version__", "Predictor", "Prediction", "Analyzer", "analyze"]

#: Lazy exports: name → the module that defines it.
_EXPORTS = {
    "Predictor": "ferkit.inference.predictor",
    "Prediction": "ferkit.inference.results",
    "Analyzer": "ferkit.inference.pipeline",
    "analyze": "ferkit.inference.pipeline",
}


__getattr__ = lazy_attributes(__name__, _EXPORTS)

# ferkit 0.1's flat module paths (ferkit.detection, ...) keep importing, with a warning.
compat.install()
