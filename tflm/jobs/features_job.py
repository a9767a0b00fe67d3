"""`tflm features`: write features to an .npz for use outside tflm."""

import numpy as np

from tflm.atomic import atomic_path
from tflm.features import SentenceFeatures
from tflm.features.extract import default_cache_dir
from tflm.features.names import check_feature_names
from tflm.features.prompt_space import resolve_strip_prompt_space
from tflm.features.task_words import task_word_ids
from tflm.tasks.splits import load_texts, resolve_task
from tflm.features.sharding import check_shards
from tflm.models.load_lm import resolve_lm
from tflm.report import write_json


def write_features(model, task, split, features, out, data_dir=None, prompt=False,
                   word_mode="logits", detokenize=False, strip_prompt_space=None,
                   cache_dir=None, max_tokens=8192, dtype=None, strategy=None, num_shards=1, shard_index=0,
                   packing=True):
    """Compute `features` for one split and write them atomically to `out` (.npz).

    The npz holds one array per feature (rows in input order), `labels` and
    `split`; `out + '.json'` records the model, dtype, task, prompt and the
    word variants kept by the word -> token rule. Returns the metadata dict.

    With ``num_shards > 1`` only shard `shard_index`'s chunks of f are computed
    into the cache (where all shards meet) and no npz is written unless the
    cache then holds every chunk; run once more without sharding (or let the
    last shard finish) to write `out` from the cache.
    """
    features = check_feature_names(features)
    check_shards(num_shards, shard_index)
    task = resolve_task(task)
    lm = resolve_lm(model, dtype)
    texts, labels, splits = load_texts(task, split, data_dir, detokenize)
    if not texts:
        raise ValueError(f"task {task.name!r} split {split!r} is empty")
    if prompt and task.prompt is None:
        raise ValueError(f"task {task.name!r} has no prompt")
    strip_prompt_space = resolve_strip_prompt_space(lm.tokenizer, strip_prompt_space)
    word_ids, variants, _ = task_word_ids(lm.tokenizer, task) if task.word_lists else ({}, {}, {})
    sf = SentenceFeatures(lm, word_ids=word_ids, word_mode=word_mode, max_tokens=max_tokens,
                          cache_dir=cache_dir if cache_dir is not None else default_cache_dir(),
                          strategy=strategy, num_shards=num_shards, shard_index=shard_index, packing=packing)
    f = sf.f(texts, prompt=task.prompt if prompt else None, strip_prompt_space=strip_prompt_space,
             identity={"task": task.name, "split": split, "detokenize": detokenize})
    if sf.last_stats["missing_rows"]:
        return {"model": lm.name, "dtype": lm.dtype, "task": task.name, "split": split, "n": len(texts),
                "shard": [shard_index, num_shards], "missing_rows": sf.last_stats["missing_rows"],
                "extraction": sf.last_stats, "features": {}}
    arrays = sf.derive(f, features)
    meta = {
        "model": lm.name, "fingerprint": lm.fingerprint(), "dtype": lm.dtype, "task": task.name, "split": split,
        "prompt": task.prompt if prompt else None, "strip_prompt_space": strip_prompt_space,
        "word_mode": word_mode, "detokenize": detokenize, "n": len(texts),
        "features": {k: list(v.shape) for k, v in arrays.items()},
        "word_variants": {k: [list(x) for x in v] for k, v in variants.items()},
        "extraction": sf.last_stats,
    }
    with atomic_path(out, suffix=".npz") as tmp:
        np.savez(tmp, labels=labels, split=splits, **arrays)
    write_json(out + ".json", meta)
    return meta
