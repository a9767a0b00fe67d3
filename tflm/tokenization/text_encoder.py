"""`TextEncoder`: texts -> model inputs (tokenizer + prompt + truncation + padding)."""

from tflm.tokenization import text_encoding
from tflm.tokenization.tokenizer import Tokenizer


class TextEncoder:
    """Turns texts into ``{"token_ids", "padding_mask"}``, in the role of keras-hub's Preprocessor.

    Every tflm path encodes text through it: features, fine-tuning, export
    (and the exported ``predict.py``, through the same `text_encoding`
    module). The rule (see `tflm.tokenization.text_encoding`): ids of
    ``text + prompt`` tokenized jointly when they fit in `max_length`, else
    the end of the text followed by the whole prompt; no special tokens but
    the tokenizer's `prefix_ids` (Gemma's ``<bos>``) first.

    Args:
        tokenizer: a `tflm.tokenization.Tokenizer`.
        prompt: text appended to every input, or None.
        max_length: the most ids per text.
        strip_prompt_space: drop the prompt's trailing spaces (GPT-2 BPE
            makes a trailing space its own token).
        pad_id: id of padding positions (masked out).

    Raises ValueError at construction when the prompt has no tokens or does
    not fit in `max_length`.
    """

    def __init__(self, tokenizer, prompt=None, max_length=1024, strip_prompt_space=False, pad_id=0):
        if isinstance(max_length, bool) or int(max_length) != max_length or max_length < 1:
            raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
        if prompt is not None and not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string or None, got {type(prompt).__name__}")
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.max_length = int(max_length)
        self.strip_prompt_space = bool(strip_prompt_space)
        self.pad_id = int(pad_id)
        self.prefix_ids = list(getattr(tokenizer, "prefix_ids", []))
        self.prompt_ids = text_encoding.prompt_ids(
            tokenizer.encode_batch, self.effective_prompt, self.max_length - len(self.prefix_ids))

    @property
    def effective_prompt(self):
        """The prompt text actually appended (trailing spaces stripped when asked)."""
        return text_encoding.effective_prompt(self.prompt, self.strip_prompt_space)

    def encode(self, texts):
        """(list of int32 id arrays, number of truncated texts), unpadded."""
        return text_encoding.encode(
            self.tokenizer.encode_batch, list(texts), self.prompt, self.max_length, self.strip_prompt_space,
            prefix_ids=self.prefix_ids,
        )

    def pad(self, id_lists, length=None):
        """(token_ids, padding_mask) int32 arrays, right-padded to `length` (default: the longest)."""
        return text_encoding.pad_batch(id_lists, self.pad_id, length)

    def __call__(self, texts, length=None):
        token_ids, padding_mask = self.pad(self.encode(texts)[0], length)
        return {"token_ids": token_ids, "padding_mask": padding_mask}

    def get_config(self):
        return {
            "tokenizer": self.tokenizer.get_config(),
            "prompt": self.prompt,
            "max_length": self.max_length,
            "strip_prompt_space": self.strip_prompt_space,
            "pad_id": self.pad_id,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        tokenizer = config.pop("tokenizer")
        if isinstance(tokenizer, dict):
            tokenizer = Tokenizer.from_config(tokenizer)
        return cls(tokenizer, **config)

    def __repr__(self):
        return (f"TextEncoder({self.tokenizer.name!r}, prompt={self.prompt!r}, max_length={self.max_length}, "
                f"strip_prompt_space={self.strip_prompt_space})")


def encode_texts(tokenizer, texts, prompt=None, max_length=1024, strip_prompt_space=False):
    """Shorthand for ``TextEncoder(tokenizer, prompt, max_length, strip_prompt_space).encode(texts)``."""
    return TextEncoder(tokenizer, prompt, max_length, strip_prompt_space).encode(texts)
