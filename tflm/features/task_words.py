"""A task's word lists -> token ids with the paper's rule, and the class of each id."""

from tflm.tokenization import word_token_ids


def task_word_ids(tokenizer, task):
    """Word-feature ids for a task.

    Returns (word_ids, variants, class_of_id): `word_ids` maps "subset" /
    "class" / "posneg" (and "zeroshot", the task's zero-shot words) to id
    lists, `variants` maps them to the kept ``(word, variant, id)`` tuples,
    and `class_of_id` maps each zero-shot word id to its class index (empty
    when the task has no zero-shot words, e.g. sst5).
    """
    word_ids, variants, class_of_id = {}, {}, {}
    lists = dict(task.word_lists)
    if task.zero_shot_words:
        lists["zeroshot"] = list(task.zero_shot_words)
    for name, words in lists.items():
        ids, kept = word_token_ids(tokenizer, words)
        word_ids[name], variants[name] = ids, kept
    if "zeroshot" in variants:
        index = {w: i for i, w in enumerate(task.zero_shot_words)}
        class_of_id = {tid: index[w] for w, _, tid in variants["zeroshot"]}
    return word_ids, variants, class_of_id
