"""Exact tokenizers backed by the Hugging Face `tokenizers` library.

keras-hub's `GPT2Tokenizer` is not byte-exact with OpenAI's GPT-2 BPE. In
keras-hub 0.32 it tokenizes Python strings through `tokenizers`, building its
pre-tokenizer as ``pre_tokenizers.Split(pattern=<GPT-2 regex as a plain str>,
behavior="isolated")``; `tokenizers` treats a plain `str` pattern as literal
text (a regex needs `tokenizers.Regex`), so the text is never split by GPT-2's
regex and BPE merges run across word boundaries. On PTB-style text such as
``it 's good`` the ``'`` + ``s`` merge then wins over ``Ġ`` + ``'``, giving
``[270, 220, 338, 922]`` where GPT-2 gives ``[270, 705, 82, 922]`` (450 of the
1,821 SST-2 test sentences differ). tflm never uses keras-hub tokenizers for
ids: every model's text is tokenized by `tokenizers` with GPT-2's exact regex
(ByteLevel pre-tokenizer) or the checkpoint's own `tokenizer.json`.
No special tokens are added to the text's ids (the paper's features use
none); a model trained with a BOS first (Gemma) names it in `bos_token_id`
and `TextEncoder` puts it before every input.
"""

import json
import os

import tokenizers

GPT2_ASSET_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "gpt2_bpe"
)


class Tokenizer:
    """A text <-> ids tokenizer equal to a model's reference tokenizer.

    Args:
        backend: a `tokenizers.Tokenizer`.
        name: a short description (e.g. "gpt2-bpe", "hf:tokenizer.json").
        eos_token_id: id that separates documents in pretraining, or None.
        bos_token_id: id the model expects before every input (Gemma's
            ``<bos>``), or None. `encode` never adds it; `TextEncoder` puts it
            first (`prefix_ids`).
    """

    def __init__(self, backend, name, eos_token_id=None, bos_token_id=None):
        self.backend = backend
        self.backend.no_padding()
        self.backend.no_truncation()
        self.name = name
        self.eos_token_id = eos_token_id
        self.bos_token_id = None if bos_token_id is None else int(bos_token_id)

    # --- construction -------------------------------------------------
    @classmethod
    def from_gpt2_files(cls, vocab_path, merges_path, name="gpt2-bpe"):
        """OpenAI GPT-2 BPE from `vocab.json` (encoder.json) and `merges.txt`."""
        for path in (vocab_path, merges_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"GPT-2 tokenizer file not found: {path}")
        model = tokenizers.models.BPE.from_file(vocab_path, merges_path)
        backend = tokenizers.Tokenizer(model)
        backend.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(
            add_prefix_space=False, use_regex=True
        )
        backend.decoder = tokenizers.decoders.ByteLevel()
        # Like OpenAI's encoder.py, "<|endoftext|>" in *text* is ordinary
        # text; the id is only inserted between documents by pretraining.
        return cls(backend, name, eos_token_id=backend.token_to_id("<|endoftext|>"))

    @classmethod
    def from_file(cls, path, name=None, eos_token_id=None):
        """A `tokenizer.json` as written by `tokenizers` / transformers."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"tokenizer file not found: {path}")
        try:
            backend = tokenizers.Tokenizer.from_file(path)
        except Exception as e:  # tokenizers raises a bare Exception
            raise ValueError(f"{path}: not a valid tokenizer.json ({e})") from None
        return cls(backend, name or f"tokenizer.json:{os.path.basename(path)}", eos_token_id)

    # --- use ------------------------------------------------------------
    @property
    def vocabulary_size(self):
        return self.backend.get_vocab_size(with_added_tokens=True)

    @property
    def prefix_ids(self):
        """Ids put before every model input: [bos_token_id], or [] (GPT-2, SmolLM2)."""
        return [] if self.bos_token_id is None else [self.bos_token_id]

    def encode(self, text):
        """Ids of one text, no special tokens added."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts):
        encs = self.backend.encode_batch(list(texts), add_special_tokens=False)
        return [e.ids for e in encs]

    def pieces(self, text):
        return self.backend.encode(text, add_special_tokens=False).tokens

    def decode(self, ids):
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_to_id(self, token):
        return self.backend.token_to_id(token)

    def id_to_token(self, i):
        return self.backend.id_to_token(int(i))

    def to_json(self):
        return self.backend.to_str()

    def fingerprint(self):
        """A stable hash of the tokenizer definition (for feature caches)."""
        import hashlib

        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()[:16]

    def get_config(self):
        """Every constructor argument, JSON-serializable (the backend as its JSON definition)."""
        return {"backend": self.to_json(), "name": self.name, "eos_token_id": self.eos_token_id,
                "bos_token_id": self.bos_token_id}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(tokenizers.Tokenizer.from_str(config.pop("backend")), **config)

    def save(self, directory):
        os.makedirs(directory, exist_ok=True)
        self.backend.save(os.path.join(directory, "tokenizer.json"))
        with open(os.path.join(directory, "tflm_tokenizer.json"), "w") as f:
            json.dump({"name": self.name, "eos_token_id": self.eos_token_id, "bos_token_id": self.bos_token_id}, f)

    @classmethod
    def load(cls, directory):
        meta_path = os.path.join(directory, "tflm_tokenizer.json")
        meta = {}
        if os.path.isfile(meta_path):
            with open(meta_path) as f:
                meta = json.load(f)
        tok = cls.from_file(
            os.path.join(directory, "tokenizer.json"),
            name=meta.get("name"),
            eos_token_id=meta.get("eos_token_id"),
        )
        tok.bos_token_id = meta.get("bos_token_id")
        return tok

    def __repr__(self):
        return f"Tokenizer({self.name!r}, vocabulary_size={self.vocabulary_size})"


def gpt2_tokenizer():
    """The exact GPT-2 BPE shipped with tflm (OpenAI's vocab.json/merges.txt)."""
    return Tokenizer.from_gpt2_files(
        os.path.join(GPT2_ASSET_DIR, "vocab.json"),
        os.path.join(GPT2_ASSET_DIR, "merges.txt"),
    )
