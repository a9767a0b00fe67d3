"""tflm: causal language models as features for text classification (Saunshi et al., ICLR 2021)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tflm.models import LanguageModel, load_lm  # noqa: E402

__version__ = "0.1.0"
__all__ = ["LanguageModel", "load_lm", "__version__"]
