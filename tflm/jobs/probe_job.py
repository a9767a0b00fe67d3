"""`tflm probe`: the paper's Table 1 / Table 2 for any model, tasks and feature types."""

import os
import time

import numpy as np

from tflm.features import SentenceFeatures
from tflm.features.extract import default_cache_dir
from tflm.features.feature_extractor import FEATURES, WORD_FEATURES
from tflm.features.task_words import task_word_ids
from tflm.jobs.data import load_texts, resolve_task, subsample
from tflm.models.load_lm import resolve_lm
from tflm.probes import logistic_probe, random_split_probe, softmax_probe
from tflm.probes.zero_shot import zero_shot_probe
from tflm.report import fmt, markdown_table, text_table, write_atomic, write_json

PROBE_FEATURES = FEATURES + ("zeroshot",)
TABLE_ORDER = ("f", "phi_p", "p", "proj", "subset", "class", "posneg", "zeroshot")


def check_probe_features(names):
    bad = [n for n in names if n not in PROBE_FEATURES]
    if bad:
        raise ValueError(f"unknown feature name(s) {bad}; choose from {list(PROBE_FEATURES)}")
    return [n for n in TABLE_ORDER if n in names]


def _strip(result):
    """Drop arrays that do not belong in results.json."""
    return {k: v for k, v in result.items()
            if k not in ("coef", "intercept", "test_predictions", "splits", "train_index", "test_index")}


def task_features(lm, task, features, word_mode="logits", cache_dir=None, progress=True, strategy=None):
    """The `SentenceFeatures` for probing `task` (both prompt modes can share it)."""
    word_ids = task_word_ids(lm.tokenizer, task)[0] if task.word_lists else {}
    need_words = {"class"} if "zeroshot" in features else set()
    need_words |= {n for n in features if n in WORD_FEATURES}
    return SentenceFeatures(lm, word_ids={k: v for k, v in word_ids.items() if k in need_words},
                            word_mode=word_mode, cache_dir=cache_dir, progress=progress, strategy=strategy)


def probe_task(lm, task, features, prompt, data_dir=None, word_mode="logits", max_train=None,
               seed=0, cache_dir=None, detokenize=False, strip_prompt_space=False, progress=True,
               log=print, sf=None, pair=False):
    """All requested probes for one task with or without its prompt; a list of row dicts.

    `pair=True` (unprompted rows only) computes f(text + prompt) in the same
    forward passes and leaves it in `sf` for the prompted rows that follow.
    """
    if prompt and task.prompt is None:
        raise ValueError(f"task {task.name!r} has no prompt")
    word_ids, variants, class_of_id = task_word_ids(lm.tokenizer, task) if task.word_lists else ({}, {}, {})
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
        if sub:
            log(f"  {name}: train subsampled to {len(tr_texts)} examples (--max-train)")
        f_tr, f_te = feats("train" if not sub else f"train[{len(tr_texts)}]", tr_texts), feats("test", te_texts)
        splits = (f_tr, y_tr, f_te, y_te)
    majority = float(np.max(np.bincount(labels if splits is None else splits[3])) /
                     len(labels if splits is None else splits[3]))

    rows = []
    for feature in features:
        row = {"task": task.name, "prompt": bool(prompt), "row": name, "feature": feature,
               "majority": majority}
        if feature in WORD_FEATURES and feature not in word_ids or (feature == "zeroshot" and not class_of_id):
            row["skipped"] = f"task {task.name} has no {'one-per-class class' if feature == 'zeroshot' else feature} words"
            rows.append(row)
            continue
        t0 = time.time()
        if feature == "zeroshot":
            def zs(f, y):
                scores = sf.derive(f, ["class"])["class"]
                return zero_shot_probe(scores, y, word_ids["class"], class_of_id, task.num_classes,
                                       score_type=word_mode)["accuracy"]
            if splits is None:
                res = {"test_accuracy": zs(f_all, labels), "n_test": len(labels)}
            else:
                res = {"test_accuracy": zs(splits[2], splits[3]), "train_accuracy": zs(splits[0], splits[1]),
                       "n_test": len(splits[3])}
            res["class_word_variants"] = [list(v) for v in variants["class"]]
        elif feature == "p":
            phi = np.asarray(lm.output_embeddings())
            if splits is None:
                raise ValueError("the full-p probe supports fixed train/test tasks only")
            res = _strip(softmax_probe(splits[0], splits[1], splits[2], splits[3], phi=phi, seed=seed))
        else:
            if splits is None:
                X = sf.derive(f_all, [feature])[feature]
                res = _strip(random_split_probe(X, labels, task=task, feature=feature))
                res["test_accuracy"] = res.pop("mean_test_accuracy")
                res["train_accuracy"] = res.pop("mean_train_accuracy")
            else:
                X_tr = sf.derive(splits[0], [feature])[feature]
                X_te = sf.derive(splits[2], [feature])[feature]
                res = _strip(logistic_probe(X_tr, splits[1], X_te, splits[3], task=task, feature=feature))
            if feature in variants:
                res["word_variants"] = [list(v) for v in variants[feature]]
        res["seconds"] = round(time.time() - t0, 2)
        row.update(res)
        log(f"  {name:10s} {feature:8s} test {fmt(row.get('test_accuracy'))}  "
            f"train {fmt(row.get('train_accuracy'))}  ({row['seconds']}s)")
        rows.append(row)
    return rows


def results_table(rows):
    """(header, rows) in the paper's shape: one row per task / task*, one column per feature."""
    features = [n for n in TABLE_ORDER if any(r["feature"] == n for r in rows)]
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


def run_probes(model, tasks, features, out_dir=None, data_dir=None, prompt_modes=(False,),
               word_mode="logits", max_train=None, seed=0, cache_dir=None, detokenize=False,
               strip_prompt_space=False, progress=True, log=print, dtype=None, strategy=None):
    """Probe every task (with/without prompt) and write results.json + results.md to `out_dir`.

    With both prompt modes, f(text) and f(text + prompt) come from one forward
    pass per text (`SentenceFeatures.f_pair`). `dtype`: compute dtype (a spec
    loads in float32 by default; a `LanguageModel` keeps its own).
    """
    features = check_probe_features(features)
    lm = resolve_lm(model, dtype)
    cache_dir = default_cache_dir() if cache_dir is None else (cache_dir or None)
    t0 = time.time()
    rows = []
    for name in tasks:
        task = resolve_task(name)
        sf = task_features(lm, task, features, word_mode, cache_dir, progress, strategy)
        pair = set(prompt_modes) == {False, True}
        for prompt in sorted(prompt_modes):
            if prompt and task.prompt is None:
                log(f"  {task.name}: no prompt defined, skipping the prompted row")
                continue
            rows += probe_task(lm, task, features, prompt, data_dir, word_mode, max_train, seed,
                               cache_dir, detokenize, strip_prompt_space, progress, log, sf=sf, pair=pair)
    header, table = results_table(rows)
    result = {
        "model": lm.name, "fingerprint": lm.fingerprint(), "dtype": lm.dtype, "features": features,
        "word_mode": word_mode,
        "max_train": max_train, "detokenize": detokenize, "strip_prompt_space": strip_prompt_space,
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
