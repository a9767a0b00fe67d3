"""Model loading: every source becomes one `LanguageModel` handle."""

from tflm.models.language_model import LanguageModel
from tflm.models.load_lm import load_lm
from tflm.models.untied_head import UntiedHead

__all__ = ["LanguageModel", "UntiedHead", "load_lm"]
