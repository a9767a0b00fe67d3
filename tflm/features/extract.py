"""Streaming, bucketed, cached extraction of sentence features."""

import os
import time

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tflm.features.batching import bucket_batches
from tflm.features.feature_cache import FeatureCache, cache_key, texts_digest
from tflm.features.feature_extractor import FeatureExtractor, check_feature_names
from tflm.tokenization.text_encoder import encode_texts
from tflm.tokenization.text_encoding import pad_batch

CHUNK_SIZE = 2048


class SentenceFeatures:
    """Runs one `LanguageModel` over texts and produces the paper's features.

    The LM runs once per text to give f (cached on disk when `cache_dir` is
    set); every other feature is derived from f and Phi in row batches, so no
    N x V array is ever held (except `p` itself when explicitly requested).

    Args:
        lm: a `tflm.models.LanguageModel`.
        word_ids: dict feature name -> token ids (for subset/class/posneg).
        word_mode: "logits" | "probs" | "logprobs".
        max_tokens, max_attention: batch budget (see `bucket_batches`).
        cache_dir: feature cache root or None.
        repair_cache: recompute corrupt cache chunks instead of raising.
        progress: show a tqdm bar with tokens/s.
    """

    def __init__(self, lm, word_ids=None, word_mode="logits", max_tokens=8192,
                 max_attention=4_000_000, cache_dir=None, repair_cache=False, progress=True,
                 proj_seed=0):
        self.lm = lm
        self.word_ids = dict(word_ids or {})
        self.extractor = FeatureExtractor(
            lm.backbone, lm.head, features=["f"] + [n for n in ("subset", "class", "posneg") if self.word_ids.get(n)],
            word_ids=self.word_ids, word_mode=word_mode, proj_seed=proj_seed, name="feature_extractor",
        )
        self.word_mode = word_mode
        self.proj_seed = proj_seed
        self.max_tokens = max_tokens
        self.max_attention = max_attention
        self.cache_dir = cache_dir
        self.repair_cache = repair_cache
        self.progress = progress
        self.last_stats = {}
        self._f_fn = tf.function(lambda ids, mask: self.extractor.sentence_f(
            {"token_ids": ids, "padding_mask": mask}), reduce_retracing=True)
        self._derived = {}

    # --- f ------------------------------------------------------------
    def f(self, texts, prompt=None, strip_prompt_space=False, max_length=None, identity=None):
        """(N, d) float32 array of f, in input order.

        `identity` (e.g. {"task": "sst2", "split": "train", "detokenize": False})
        becomes part of the cache key together with the model fingerprint,
        tokenizer, texts, prompt and truncation.
        """
        texts = list(texts)
        if not texts:
            raise ValueError("empty dataset: no texts to featurize")
        max_length = int(max_length or self.lm.max_sequence_length)
        if prompt is not None:  # fail early on a bad prompt
            encode_texts(self.lm.tokenizer, texts[:1], prompt, max_length, strip_prompt_space)
        cache = None
        if self.cache_dir:
            parts = dict(
                model=self.lm.name, fingerprint=self.lm.fingerprint(), tokenizer=self.lm.tokenizer.fingerprint(),
                texts=texts_digest(texts), n=len(texts), prompt=prompt, strip_prompt_space=strip_prompt_space,
                max_length=max_length, chunk=CHUNK_SIZE, identity=identity or {},
            )
            cache = FeatureCache(self.cache_dir, cache_key(**parts), description=parts)
        out = np.zeros((len(texts), self.lm.hidden_dim), dtype=np.float32)
        bar = tqdm(total=len(texts), unit="text", disable=not self.progress,
                   desc=f"f[{self.lm.name}]", mininterval=1.0)
        t0 = time.time()
        stats = dict(examples=len(texts), tokens=0, truncated=0, computed_tokens=0, padded_tokens=0)
        for c, start in enumerate(range(0, len(texts), CHUNK_SIZE)):
            stop = min(start + CHUNK_SIZE, len(texts))
            # Tokenize one chunk at a time: memory does not grow with N.
            ids, truncated = encode_texts(self.lm.tokenizer, texts[start:stop], prompt, max_length,
                                          strip_prompt_space)
            lengths = [len(x) for x in ids]
            stats["tokens"] += sum(lengths)
            stats["truncated"] += truncated
            if cache is not None and cache.has(c):
                arr = cache.load(c, stop - start, repair=self.repair_cache)
                if arr is not None:
                    out[start:stop] = arr
                    bar.update(stop - start)
                    continue
            for idx, padded in bucket_batches(lengths, self.max_tokens, self.max_attention):
                tok, mask = pad_batch([ids[i] for i in idx], length=padded)
                out[start + idx] = self._f_fn(tf.constant(tok), tf.constant(mask)).numpy()
                stats["padded_tokens"] += tok.size
                stats["computed_tokens"] += int(mask.sum())
                bar.update(len(idx))
                bar.set_postfix_str(f"{stats['computed_tokens'] / max(time.time() - t0, 1e-9):,.0f} tok/s",
                                    refresh=False)
            if cache is not None:
                cache.save(c, out[start:stop])
        bar.close()
        stats["seconds"] = round(time.time() - t0, 2)
        self.last_stats = stats
        return out

    def context_f(self, texts, max_contexts=20000, seed=0):
        """f at every real position of the texts (each prefix is a context), subsampled.

        Returns (N, d) float32 with N <= max_contexts, sampled uniformly
        (seeded) over all positions.
        """
        ids, _ = encode_texts(self.lm.tokenizer, list(texts), None, self.lm.max_sequence_length)
        fn = tf.function(lambda t, m: self.lm.features(t, m), reduce_retracing=True)
        total = sum(len(x) for x in ids)
        keep = np.zeros(total, dtype=bool)
        keep[np.random.default_rng(seed).permutation(total)[:max_contexts]] = True
        offsets = np.concatenate([[0], np.cumsum([len(x) for x in ids])])
        out = np.zeros((int(keep.sum()), self.lm.hidden_dim), dtype=np.float32)
        slot = np.cumsum(keep) - 1
        for idx, padded in bucket_batches([len(x) for x in ids], self.max_tokens, self.max_attention):
            tok, mask = pad_batch([ids[i] for i in idx], length=padded)
            h = fn(tf.constant(tok), tf.constant(mask)).numpy()
            for row, i in enumerate(idx):
                pos = np.arange(offsets[i], offsets[i + 1])
                sel = keep[pos]
                out[slot[pos[sel]]] = h[row, : len(ids[i])][sel]
        return out

    # --- derived --------------------------------------------------------
    def derive(self, f, names, batch_rows=256):
        """Stream the named features from f in row batches; returns dict of arrays."""
        names = check_feature_names(names)
        for n in names:
            if n in ("subset", "class", "posneg") and not self.word_ids.get(n):
                raise ValueError(f"feature {n!r} needs a word list, and this task has none")
        if "proj" in names and self.extractor.projection is None:
            from tflm.features.random_projection import RandomProjection

            self.extractor.projection = RandomProjection(
                self.lm.hidden_dim, self.lm.vocabulary_size, seed=self.proj_seed, name="projection")
        key = tuple(names)
        if key not in self._derived:
            self._derived[key] = tf.function(lambda x: self.extractor.derive(x, names), reduce_retracing=True)
        fn = self._derived[key]
        outs = {n: [] for n in names}
        for start in range(0, len(f), batch_rows):
            res = fn(tf.constant(f[start:start + batch_rows]))
            for n in names:
                outs[n].append(res[n].numpy())
        return {n: np.concatenate(v, axis=0) for n, v in outs.items()}

    def derive_batches(self, f, name, batch_rows=256):
        """Generator of (start, batch) of one derived feature (for N x V streaming)."""
        for start in range(0, len(f), batch_rows):
            yield start, self.derive(f[start:start + batch_rows], [name], batch_rows)[name]


def default_cache_dir():
    return os.environ.get("TFLM_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "tflm", "features"))
