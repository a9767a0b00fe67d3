"""A task's word lists -> token ids with the paper's rule, and the class of each id."""

from tflm.tokenization import word_token_ids


def task_word_ids(tokenizer, task):
    """Word-feature ids for a task.

    Returns (word_ids, variants, class_of_id): `word_ids` maps "subset" /
    "class" / "posneg" to id lists, `variants` maps them to the kept
    ``(word, variant, id)`` tuples, and `class_of_id` maps each class-word id
    to its class index (empty when the class words are not one per class,
    e.g. sst5).
    """
    word_ids, variants, class_of_id = {}, {}, {}
    for name, words in task.word_lists.items():
        ids, kept = word_token_ids(tokenizer, words)
        word_ids[name], variants[name] = ids, kept
    if "class" in variants and task.class_words_per_class:
        index = {w: i for i, w in enumerate(task.class_words)}
        class_of_id = {tid: index[w] for w, _, tid in variants["class"]}
    return word_ids, variants, class_of_id
