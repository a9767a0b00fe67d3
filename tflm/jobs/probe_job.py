"""`tflm probe`: the paper's Table 1 / Table 2 for any model, tasks and feature types."""

import os
import time

import numpy as np

from tflm.features import SentenceFeatures
from tflm.features.extract import default_cache_dir
from tflm.features.names import FEATURES, WORD_FEATURES
from tflm.features.prompt_space import resolve_strip_prompt_space
from tflm.features.task_words import task_word_ids
from tflm.features.word_scores import WordScores
from tflm.tasks.splits import load_texts, resolve_task, split_name, subsample
from tflm.models.load_lm import resolve_lm
from tflm.probes import evaluate_probe, probe_for, random_split_probe
from tflm.atomic import write_atomic
from tflm.report import fmt, markdown_table, text_table, write_json
from tflm.tasks import random_splits

ZERO_SHOT = ("zeroshot", "zeroshot_cal")  # plain and calibrated (class scores centred over the texts)
PROBE_FEATURES = FEATURES + ZERO_SHOT
TABLE_ORDER = ("f", "phi_p", "p", "proj", "subset", "class", "posneg") + ZERO_SHOT + ("FT",)  # FT: fine-tuning


def check_probe_features(names):
    bad = [n for n in names if n not in PROBE_FEATURES]
    if bad:
        raise ValueError(f"unknown feature name(s) {bad}; choose from {list(PROBE_FEATURES)}")
    return [n for n in TABLE_ORDER if n in names]


def _strip(result):
    """Drop arrays and objects that do not belong in results.json."""
    return {k: v for k, v in result.items() if k not in ("estimator", "splits", "train_index", "test_index")}


def probe_settings(spec, task, feature, lm=None, word_ids=None, class_of_id=None, word_mode="logits",
                   seed=0, probe_backend="tf"):
    """The settings a registered probe gets for `feature` on `task` (the job's task -> settings map)."""
    if spec.name == "logistic":
        return {**task.probe_solver(feature), "backend": probe_backend}
    if spec.name == "softmax":
        return {"phi": np.asarray(lm.output_embeddings()), "seed": seed}
    if spec.name == "zeroshot":  # scores are the logits of the task's zero-shot words
        return {"token_ids": word_ids["zeroshot"], "token_classes": class_of_id, "num_classes": task.num_classes,
                "score_type": "logits", "calibrate": feature == "zeroshot_cal"}
    raise ValueError(f"no settings rule for probe {spec.name!r} (feature {feature!r})")


def task_features(lm, task, features, word_mode="logits", cache_dir=None, progress=True, strategy=None,
                  packing=True):
    """The `SentenceFeatures` for probing `task` (both prompt modes share it)."""
    word_ids = task_word_ids(lm.tokenizer, task)[0]
    need_words = {n for n in features if n in WORD_FEATURES}
    return SentenceFeatures(lm, word_ids={k: v for k, v in word_ids.items() if k in need_words},
                            word_mode=word_mode, cache_dir=cache_dir, progress=progress, strategy=strategy,
                            packing=packing)


def probe_task(lm, task, features, prompt, data_dir=None, word_mode="logits", max_train=None,
               seed=0, cache_dir=None, detokenize=False, strip_prompt_space=None, progress=True,
               log=print, max_test=None, probe_backend="tf", sf=None, pair=False):
    """All requested probes for one task with or without its prompt; a list of row dicts.

    `max_train` / `max_test` subsample the fixed train / test splits (seeded, printed); each row
    records the sizes used and `strip_prompt_space` (None: the tokenizer's default,
    `tflm.features.prompt_space`). Probes come from `tflm.probes.registry`. `pair=True`
    (unprompted rows only) computes f(text + prompt) in the same forward passes and leaves it in
    `sf` (and the feature cache) for the prompted rows that follow.
    """
    if prompt and task.prompt is None:
        raise ValueError(f"task {task.name!r} has no prompt")
    strip_prompt_space = resolve_strip_prompt_space(lm.tokenizer, strip_prompt_space)
    word_ids, variants, class_of_id = task_word_ids(lm.tokenizer, task)
    sf = sf or task_features(lm, task, features, word_mode, cache_dir, progress)
    p_text = task.prompt if prompt else None
    name = task.name + ("*" if prompt else "")

    def feats(split, texts):
        t0 = time.time()
        identity = {"task": task.name, "split": split, "detokenize": detokenize}
        if pair and not prompt and task.prompt is not None:
            f = sf.f_pair(texts, task.prompt, strip_prompt_space=strip_prompt_space, identity=identity)[0]
        else:
            f = sf.f(texts, prompt=p_text, strip_prompt_space=strip_prompt_space, identity=identity)
        log(f"  {name} {split}: {len(texts)} texts, {sf.last_stats['tokens']} tokens "
            f"({sf.last_stats['truncated']} truncated), {time.time() - t0:.1f}s")
        return f

    if task.is_random_split:
        texts, labels, _ = load_texts(task, "all", data_dir, detokenize)
        f_all = feats("all", texts)
        splits = None
    else:
        tr_texts, y_tr, _ = load_texts(task, "train", data_dir, detokenize)
        te_texts, y_te, _ = load_texts(task, "test", data_dir, detokenize)
        tr_texts, y_tr, sub = subsample(tr_texts, y_tr, max_train, seed)
        te_texts, y_te, sub_te = subsample(te_texts, y_te, max_test, seed)
        for split, n, was in (("train", len(tr_texts), sub), ("test", len(te_texts), sub_te)):
            if was:
                log(f"  {name}: {split} subsampled to {n} examples (seeded, seed {seed})")
        f_tr = feats(split_name("train", sub, len(tr_texts)), tr_texts)
        f_te = feats(split_name("test", sub_te, len(te_texts)), te_texts)
        splits = (f_tr, y_tr, f_te, y_te)
    majority = float(np.max(np.bincount(labels if splits is None else splits[3])) /
                     len(labels if splits is None else splits[3]))

    if class_of_id and any(n in ZERO_SHOT for n in features):
        zero_shot_scorer = WordScores(word_ids["zeroshot"], mode="logits", name="zero_shot_scores")
        phi = lm.output_embeddings()

    rows = []
    for feature in features:
        row = {"task": task.name, "prompt": bool(prompt), "row": name, "feature": feature,
               "majority": majority, "strip_prompt_space": bool(strip_prompt_space) if prompt else None}
        if feature in WORD_FEATURES and feature not in word_ids or (feature in ZERO_SHOT and not class_of_id):
            row["skipped"] = f"task {task.name} has no {'zero-shot' if feature in ZERO_SHOT else feature} words"
            rows.append(row)
            continue
        t0 = time.time()
        spec = probe_for(feature)
        probe = spec.make(**probe_settings(spec, task, feature, lm, word_ids, class_of_id, word_mode, seed,
                                           probe_backend))

        def inputs(f):
            if spec.input == "f":
                return f
            if spec.input == "zeroshot":  # logit scores of the task's zero-shot words
                return np.asarray(zero_shot_scorer(f, phi))
            return sf.derive(f, [feature])[feature]

        if splits is None:
            X = inputs(f_all)
            if not spec.trains:  # nothing to learn (zero-shot): every row is a test row
                res = {"test_accuracy": float(probe.fit(X, labels).score(X, labels)), "n_test": len(labels)}
            else:
                draws = random_splits(X, labels, n_splits=task.n_splits, test_fraction=task.test_fraction,
                                      seed=task.split_seed)
                res = _strip(random_split_probe(X, labels, [(d.train_index, d.test_index) for d in draws],
                                                estimator=probe))
                res["test_accuracy"] = res.pop("mean_test_accuracy")
                res["train_accuracy"] = res.pop("mean_train_accuracy")
        else:
            res = _strip(evaluate_probe(probe, inputs(splits[0]), splits[1], inputs(splits[2]), splits[3]))
        if feature in ZERO_SHOT:
            res["zero_shot_word_variants"] = [list(v) for v in variants["zeroshot"]]
        elif feature in variants:
            res["word_variants"] = [list(v) for v in variants[feature]]
        res["seconds"] = round(time.time() - t0, 2)
        row.update(res)
        log(f"  {name:10s} {feature:8s} test {fmt(row.get('test_accuracy'))}  "
            f"train {fmt(row.get('train_accuracy'))}  ({row['seconds']}s)")
        rows.append(row)
    return rows


def results_table(rows, features=None):
    """(header, rows) in the paper's shape: one row per task / task*, one column per feature.

    `features`: the columns (default: those of TABLE_ORDER present in `rows`)."""
    features = features or [n for n in TABLE_ORDER if any(r["feature"] == n for r in rows)]
    names = []
    for r in rows:
        if r["row"] not in names:
            names.append(r["row"])
    header = ["task"] + features + ["majority"]
    table = []
    for name in names:
        cells = {r["feature"]: r for r in rows if r["row"] == name}
        maj = next(iter(cells.values()))["majority"]
        table.append([name] + [("-" if "skipped" in cells.get(n, {"skipped": 1}) else fmt(cells[n].get("test_accuracy")))
                               for n in features] + [fmt(maj)])
    return header, table


def task_prompt_modes(tasks, prompt_modes, log=print):
    """(Task, prompt?) pairs in table order; a prompted row of a task without a prompt is skipped (logged)."""
    for name in tasks:
        task = resolve_task(name)
        for prompt in sorted(prompt_modes):  # unprompted first: it may compute the prompted f too
            if prompt and task.prompt is None:
                log(f"  {task.name}: no prompt defined, skipping the prompted row")
                continue
            yield task, prompt


def run_probes(model, tasks, features, out_dir=None, data_dir=None, prompt_modes=(False,),
               word_mode="logits", max_train=None, seed=0, cache_dir=None, detokenize=False,
               strip_prompt_space=None, progress=True, log=print, max_test=None, probe_backend="tf",
               dtype=None, strategy=None, packing=True):
    """Probe every task (with/without prompt) and write results.json + results.md to `out_dir`.

    With both prompt modes, f(text) and f(text + prompt) come from one forward
    pass per text (`SentenceFeatures.f_pair`). `dtype`: compute dtype (a spec
    loads in float32 by default; a `LanguageModel` keeps its own). `packing`: several texts per
    batch row (`SentenceFeatures`; same f, same cache).
    """
    features = check_probe_features(features)
    lm = resolve_lm(model, dtype)
    cache_dir = default_cache_dir() if cache_dir is None else (cache_dir or None)
    t0 = time.time()
    rows = []
    pair = set(prompt_modes) == {False, True}
    sfs = {}
    for task, prompt in task_prompt_modes(tasks, prompt_modes, log):
        if task.name not in sfs:
            sfs[task.name] = task_features(lm, task, features, word_mode, cache_dir, progress, strategy,
                                           packing)
        rows += probe_task(lm, task, features, prompt, data_dir, word_mode, max_train, seed,
                           cache_dir, detokenize, strip_prompt_space, progress, log, max_test, probe_backend,
                           sf=sfs[task.name], pair=pair)
    header, table = results_table(rows)
    result = {
        "model": lm.name, "fingerprint": lm.fingerprint(), "dtype": lm.dtype, "features": features,
        "word_mode": word_mode, "max_train": max_train, "max_test": max_test, "detokenize": detokenize,
        "strip_prompt_space": resolve_strip_prompt_space(lm.tokenizer, strip_prompt_space),
        "probe_backend": probe_backend,
        "wall_time_s": round(time.time() - t0, 1), "rows": rows,
    }
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        write_json(os.path.join(out_dir, "results.json"), result)
        md = (f"# Linear probes: {lm.name}\n\nTest accuracy (%); `*` rows use the task's prompt. "
              f"Word features as {word_mode}.\n\n" + markdown_table(header, table) + "\n")
        write_atomic(os.path.join(out_dir, "results.md"), md)
    log("\n" + text_table(header, table))
    return result
