"""tflm: causal language models as features for text classification (Saunshi et al., ICLR 2021)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
__all__ = ["LanguageModel", "load_lm", "__version__"]


def __getattr__(name):
    # Lazy, so `tflm.cli` can configure TensorFlow's logging before TensorFlow is imported.
    if name in ("LanguageModel", "load_lm"):
        from tflm import models

        return getattr(models, name)
    raise AttributeError(f"module 'tflm' has no attribute {name!r}")
