"""Streaming, bucketed, cached extraction of sentence features."""

import os
import time

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tflm.features.batching import bucket_batches, pack_batches
from tflm.features.feature_cache import FeatureCache, cache_key, texts_digest
from tflm.features.feature_extractor import FeatureExtractor, check_feature_names
from tflm.features.forward_pass import ForwardPass
from tflm.features.sharding import check_shards
from tflm.models.packed_forward import row_arrays, supports_packing
from tflm.tokenization.text_encoder import encode_texts
from tflm.tokenization.text_encoding import pad_batch

CHUNK_SIZE = 2048
PACK_LENGTH = 256  # tokens per packed row (see notes/packing.md for the measurement)


class SentenceFeatures:
    """Runs one `LanguageModel` over texts and produces the paper's features.

    The LM runs once per text to give f (cached on disk when `cache_dir` is
    set); every other feature is derived from f and Phi in row batches, so no
    N x V array is ever held (except `p` itself when explicitly requested).
    `f_pair` gets f(text) and f(text + prompt) from one forward pass.

    Args:
        lm: a `tflm.models.LanguageModel` (its dtype is part of the cache key).
        word_ids: dict feature name -> token ids (for subset/class/posneg).
        word_mode: "logits" | "probs" | "logprobs".
        max_tokens, max_attention: batch budget (see `bucket_batches`).
        cache_dir: feature cache root or None.
        repair_cache: recompute corrupt cache chunks instead of raising.
        progress: show a tqdm bar with tokens/s.
        proj_seed: seed of the random projection feature.
        strategy: a `tf.distribute` strategy (e.g. `tflm.distribute.get_strategy`);
            with R local replicas every batch is split into R slices.
        num_shards, shard_index: compute only the cache chunks
            ``c % num_shards == shard_index`` (needs `cache_dir`, where the
            shards meet); rows of other shards come from the cache or are NaN.
        packing: put several texts in one row of `pack_length` tokens (each at
            its own positions, attending only to itself; `pack_batches`), on
            backbones that support it (`supports_packing`: GPT-2, Llama); texts
            longer than a row keep a row each. f is the same either way, and so
            is the cache key. False: one text per row, length-bucketed.
        pack_length: tokens per packed row.
    """

    def __init__(self, lm, word_ids=None, word_mode="logits", max_tokens=8192,
                 max_attention=4_000_000, cache_dir=None, repair_cache=False, progress=True,
                 proj_seed=0, strategy=None, num_shards=1, shard_index=0, packing=True,
                 pack_length=PACK_LENGTH):
        check_shards(num_shards, shard_index)
        if num_shards > 1 and not cache_dir:
            raise ValueError("sharded extraction needs a cache directory: the shards' chunks meet there")
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
        self.num_shards = int(num_shards)
        self.shard_index = int(shard_index)
        self.packing = bool(packing) and supports_packing(lm.backbone)
        self.pack_length = int(pack_length)
        self.last_stats = {}
        self.forward = ForwardPass.shared(lm, self.extractor, strategy)
        self._derived = {}
        self._pending = {}  # cache key -> f(text + prompt) from f_pair, until f asks for it

    # --- tokens -----------------------------------------------------------
    def _encode(self, texts, prompt, max_length, strip_prompt_space):
        """The one place texts become token ids."""
        return encode_texts(self.lm.tokenizer, texts, prompt, max_length, strip_prompt_space)

    # --- f ------------------------------------------------------------
    def f(self, texts, prompt=None, strip_prompt_space=False, max_length=None, identity=None):
        """(N, d) float32 array of f, in input order.

        `identity` (e.g. {"task": "sst2", "split": "train", "detokenize": False})
        becomes part of the cache key together with the model fingerprint,
        compute dtype, tokenizer, texts, prompt and truncation.
        """
        texts = list(texts)
        if self._pending:
            key = cache_key(**self.cache_parts(texts, prompt, strip_prompt_space, max_length, identity))
            if key in self._pending:
                f, self.last_stats = self._pending.pop(key)
                return f
        return self._extract(texts, [prompt], strip_prompt_space, max_length, identity)[0]

    def f_pair(self, texts, prompt, strip_prompt_space=False, max_length=None, identity=None):
        """(f(text), f(text + prompt)), each (N, d) float32, from one forward pass.

        Under causal attention the hidden state at the last text token of
        ``text + prompt`` is f(text), so one pass over the joint ids gives both.
        Rows where the text's ids are not a prefix of the joint ids
        (truncation, or a token merging across the text/prompt boundary) get
        a second pass over the text alone. Both arrays use the same cache
        entries as `f(texts)` and `f(texts, prompt)`, and the next
        `f(texts, prompt, ...)` call with the same arguments returns the
        prompted array without running the LM (even without a cache).
        """
        if prompt is None:
            raise ValueError("f_pair needs a prompt")
        texts = list(texts)
        pair = self._extract(texts, [None, prompt], strip_prompt_space, max_length, identity)
        key = cache_key(**self.cache_parts(texts, prompt, strip_prompt_space, max_length, identity))
        self._pending[key] = (pair[1], dict(self.last_stats, shared_pass=True))
        return pair

    def cache_parts(self, texts, prompt, strip_prompt_space=False, max_length=None, identity=None):
        """Everything that determines f (the cache key's inputs)."""
        return dict(
            model=self.lm.name, fingerprint=self.lm.fingerprint(), dtype=self.lm.backbone.dtype_policy.name,
            tokenizer=self.lm.tokenizer.fingerprint(), texts=texts_digest(texts), n=len(texts), prompt=prompt,
            strip_prompt_space=strip_prompt_space, max_length=int(max_length or self.lm.max_sequence_length),
            chunk=CHUNK_SIZE, identity=identity or {},
        )

    def _extract(self, texts, prompts, strip_prompt_space, max_length, identity):
        texts = list(texts)
        if not texts:
            raise ValueError("empty dataset: no texts to featurize")
        max_length = int(max_length or self.lm.max_sequence_length)
        for prompt in prompts:
            if prompt is not None:  # fail early on a bad prompt
                self._encode(texts[:1], prompt, max_length, strip_prompt_space)
        caches = [None] * len(prompts)
        if self.cache_dir:
            for k, prompt in enumerate(prompts):
                parts = self.cache_parts(texts, prompt, strip_prompt_space, max_length, identity)
                caches[k] = FeatureCache(self.cache_dir, cache_key(**parts), description=parts)
        outs = [np.zeros((len(texts), self.lm.hidden_dim), dtype=np.float32) for _ in prompts]
        bar = tqdm(total=len(texts), unit="text", disable=not self.progress,
                   desc=f"f[{self.lm.name}]", mininterval=1.0)
        t0 = time.time()
        stats = dict(examples=len(texts), tokens=0, truncated=0, computed_tokens=0, padded_tokens=0,
                     passes=0, second_passes=0, missing_rows=0, packed=self.packing)
        for c, start in enumerate(range(0, len(texts), CHUNK_SIZE)):
            stop = min(start + CHUNK_SIZE, len(texts))
            loaded = [self._load(cache, c, stop - start) for cache in caches]
            todo = [k for k, arr in enumerate(loaded) if arr is None]
            for k, arr in enumerate(loaded):
                if arr is not None:
                    outs[k][start:stop] = arr
            if todo and c % self.num_shards != self.shard_index:
                for k in todo:
                    outs[k][start:stop] = np.nan
                stats["missing_rows"] += stop - start
                todo = []
            # Tokenize one chunk at a time: memory does not grow with N.
            encoded = {k: self._encode(texts[start:stop], prompts[k], max_length, strip_prompt_space) for k in todo}
            if todo:  # tokens and truncations of the widest variant (text + prompt in a pair)
                stats["tokens"] += sum(len(x) for x in encoded[todo[-1]][0])
                stats["truncated"] += encoded[todo[-1]][1]
            if not todo:
                bar.update(stop - start)
                continue
            sequences = plan_sequences([encoded[k][0] for k in todo])
            stats["passes"] += len(sequences)
            stats["second_passes"] += len(sequences) - (stop - start)
            lengths = [len(ids) for ids, _ in sequences]
            for rows, padded in self._plan(lengths):
                reads = []  # per row: (variant slot, position in the row, text row) of each f read there
                for row in rows:
                    at, row_reads = 0, []
                    for i in row:
                        row_reads += [(slot, at + p, text_row) for slot, p, text_row in sequences[i][1]]
                        at += lengths[i]
                    reads.append(row_reads)
                width = max(len(r) for r in reads)
                positions = np.array([[p for _, p, _ in r] + [r[-1][1]] * (width - len(r)) for r in reads],
                                     dtype=np.int32)
                seqs = [[sequences[i][0] for i in row] for row in rows]
                if self.packing:
                    h = self.forward.packed(*row_arrays(seqs, padded), positions)
                else:
                    h = self.forward(*pad_batch([s[0] for s in seqs], length=padded), positions)
                for row, r in enumerate(reads):
                    for j, (slot, _, text_row) in enumerate(r):
                        outs[todo[slot]][start + text_row] = h[row, j]
                stats["padded_tokens"] += len(rows) * padded
                stats["computed_tokens"] += sum(lengths[i] for row in rows for i in row)
                bar.update(sum(1 for r in reads for slot, _, _ in r if slot == len(todo) - 1))
                elapsed = max(time.time() - t0, 1e-9)
                bar.set_postfix_str(f"{stats['computed_tokens'] / elapsed:,.0f} tok/s, "
                                    f"{padding_fraction(stats):.1%} padding", refresh=False)
            for k in todo:
                if caches[k] is not None:
                    caches[k].save(c, outs[k][start:stop])
        bar.close()
        stats["seconds"] = round(time.time() - t0, 2)
        stats["padding"] = round(padding_fraction(stats), 4)
        self.last_stats = stats
        return outs

    def _plan(self, lengths):
        """The batches of one chunk's passes: ``(rows, padded_len)``, each row a list of pass indices."""
        if self.packing:
            return pack_batches(lengths, self.pack_length, self.max_tokens, self.max_attention)
        return [([[i] for i in idx], padded)
                for idx, padded in bucket_batches(lengths, self.max_tokens, self.max_attention)]

    def _load(self, cache, index, rows):
        if cache is None or not cache.has(index):
            return None
        return cache.load(index, rows, repair=self.repair_cache, columns=self.lm.hidden_dim)

    def context_f(self, texts, max_contexts=20000, seed=0):
        """f at every real position of the texts (each prefix is a context), subsampled.

        Returns (N, d) float32 with N <= max_contexts, sampled uniformly
        (seeded) over all positions.
        """
        ids, _ = self._encode(list(texts), None, self.lm.max_sequence_length, False)
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


def padding_fraction(stats):
    """The fraction of the computed tokens that were padding (0 before any batch)."""
    return 1.0 - stats["computed_tokens"] / stats["padded_tokens"] if stats["padded_tokens"] else 0.0


def plan_sequences(id_lists):
    """The forward passes that give every variant's f for one chunk of texts.

    `id_lists[k][i]` are the ids of text i in variant k; variant 0 may be the
    bare text and the last variant the text + prompt. Returns a list of
    ``(ids, targets)``, targets being ``(variant, position, text_row)``
    triples read from that pass. With one variant, one pass per text. With two,
    one pass over the joint ids reads f(text) at the last text token when the
    text's ids are a prefix of the joint ids, and a second pass over the text
    alone is planned otherwise. The last target of each pass is its last token.
    """
    if len(id_lists) == 1:
        return [(ids, [(0, len(ids) - 1, i)]) for i, ids in enumerate(id_lists[0])]
    if len(id_lists) != 2:
        raise ValueError("at most two variants (text, text + prompt) share a pass")
    plan, extra = [], []
    for i, (text_ids, joint_ids) in enumerate(zip(*id_lists)):
        n = len(text_ids)
        if n < len(joint_ids) and np.array_equal(joint_ids[:n], text_ids):
            plan.append((joint_ids, [(0, n - 1, i), (1, len(joint_ids) - 1, i)]))
        else:
            plan.append((joint_ids, [(1, len(joint_ids) - 1, i)]))
            extra.append((text_ids, [(0, n - 1, i)]))
    return plan + extra


def default_cache_dir():
    return os.environ.get("TFLM_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "tflm", "features"))
