"""Exact tokenization for every model source (see `Tokenizer`)."""

from tflm.tokenization.text_encoder import TextEncoder
from tflm.tokenization.tokenizer import Tokenizer, gpt2_tokenizer
from tflm.tokenization.word_tokens import word_token_ids

__all__ = ["TextEncoder", "Tokenizer", "gpt2_tokenizer", "word_token_ids"]
