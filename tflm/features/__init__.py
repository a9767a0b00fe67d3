"""Sentence features of a causal LM: f, Phi p_f, p_f, word scores, random projection."""

from tflm.features.conditional_mean import ConditionalMean
from tflm.features.extract import SentenceFeatures
from tflm.features.feature_cache import CacheError, FeatureCache
from tflm.features.feature_extractor import FeatureExtractor
from tflm.features.last_token_pooling import LastTokenPooling
from tflm.features.names import FEATURES, canonical_feature_name
from tflm.features.random_projection import RandomProjection
from tflm.features.word_scores import WordScores

__all__ = ["FEATURES", "CacheError", "ConditionalMean", "FeatureCache", "FeatureExtractor",
           "LastTokenPooling", "canonical_feature_name", "RandomProjection", "SentenceFeatures", "WordScores"]
