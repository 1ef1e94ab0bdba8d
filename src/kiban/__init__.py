"""kiban (基盤): a DataOps platform whose service levels come from use cases."""

from kiban.api import Trained, asset, score, train  # the decorators of Python models (a light module)

__version__ = "0.1.0"

__all__ = ["Trained", "__version__", "asset", "score", "train"]
