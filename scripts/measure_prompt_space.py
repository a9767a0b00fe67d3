"""Measure the prompt's trailing space (issue 10, item 5) and the calibrated zero-shot (item 4).

One forward pass per text serves both choices: the prompt with its trailing
space tokenizes as ``ids(text + prompt.rstrip()) + [ids(" ")]`` (checked per
text; a text where it does not is reported and skipped), so with a causal LM
the hidden state one position before the end is exactly f of the stripped
prompt. This is verified against `SentenceFeatures.f(..., strip_prompt_space=True)`
on the first texts before anything is measured.

Usage: python scripts/measure_prompt_space.py --model smollm2 --tasks sst2,cr,sst5,agnews \
           --max-train 1000 --max-test 1000 --out docs/results/prompt_space
Features are saved per task (npz) so a rerun only refits the probes.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

from tflm.features import SentenceFeatures
from tflm.features.batching import bucket_batches
from tflm.tokenization.text_encoder import encode_texts
from tflm.features.task_words import task_word_ids
from tflm.tasks.splits import load_texts, resolve_task, subsample
from tflm.models import load_lm
from tflm.probes import logistic_probe
from tflm.probes.zero_shot import zero_shot_probe
from tflm.report import write_json
from tflm.tokenization.text_encoding import pad_batch


def two_position_f(lm, texts, prompt, log=print):
    """(f with the trailing space, f without it, kept index) in one pass."""
    with_space, _ = encode_texts(lm.tokenizer, texts, prompt, lm.max_sequence_length)
    stripped, _ = encode_texts(lm.tokenizer, texts, prompt.rstrip(" "), lm.max_sequence_length)
    keep = [i for i, (a, b) in enumerate(zip(with_space, stripped))
            if len(a) == len(b) + 1 and np.array_equal(a[:-1], b)]
    if len(keep) < len(texts):
        log(f"  {len(texts) - len(keep)} texts tokenize differently without the space: skipped")
    ids = [with_space[i] for i in keep]
    fn = tf.function(lambda t, m: lm.backbone({"token_ids": t, "padding_mask": m}), reduce_retracing=True)
    out_a = np.zeros((len(ids), lm.hidden_dim), np.float32)
    out_b = np.zeros_like(out_a)
    lengths = [len(x) for x in ids]
    t0, done = time.time(), 0
    for idx, padded in bucket_batches(lengths, 8192, 4_000_000):
        tok, mask = pad_batch([ids[i] for i in idx], length=padded)
        h = fn(tf.constant(tok), tf.constant(mask)).numpy()
        last = mask.sum(axis=1) - 1
        out_a[idx] = h[np.arange(len(idx)), last]
        out_b[idx] = h[np.arange(len(idx)), last - 1]
        done += int(mask.sum())
        print(f"\r  {done} tokens, {done / (time.time() - t0):.0f} tok/s", end="", file=sys.stderr)
    print(file=sys.stderr)
    return out_a, out_b, np.asarray(keep)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2")
    p.add_argument("--tasks", default="sst2,cr,sst5,agnews")
    p.add_argument("--data", default="/work/shared/data")
    p.add_argument("--max-train", type=int, default=1000)
    p.add_argument("--max-test", type=int, default=1000)
    p.add_argument("--full-test", default="sst2", help="tasks evaluated on their whole test set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", help="compute dtype of the LM (float32, bfloat16)")
    p.add_argument("--out", default="docs/results/prompt_space")
    p.add_argument("--features-dir", help="where the per-task feature .npz go (default: --out)")
    p.add_argument("--report-only", action="store_true", help="write REPORT.md from results.json and stop")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    res_path = os.path.join(args.out, "results.json")
    if args.report_only:
        write_report(json.load(open(res_path)), args.out)
        return
    lm = load_lm(args.model, dtype=args.dtype)
    sf = SentenceFeatures(lm, progress=False)
    results = {"command": "python " + " ".join(sys.argv), "model": lm.name, "dtype": args.dtype, "fingerprint": lm.fingerprint(), "tokenizer": lm.tokenizer.name,
               "max_train": args.max_train, "max_test": args.max_test, "seed": args.seed, "tasks": {}}
    if os.path.isfile(res_path):
        results["tasks"] = json.load(open(res_path)).get("tasks", {})
    checked = False
    for name in args.tasks.split(","):
        task = resolve_task(name)
        npz = os.path.join(args.features_dir or args.out, f"{name}_features.npz")
        t0 = time.time()
        if os.path.isfile(npz):
            z = dict(np.load(npz))
        else:
            z = {}
            for split, n in (("train", args.max_train), ("test", None if name in args.full_test.split(",") else args.max_test)):
                texts, y, _ = load_texts(task, split, args.data)
                texts, y, sub = subsample(texts, y, n, args.seed)
                print(f"{name} {split}: {len(texts)} texts" + (f" (seeded subsample, seed {args.seed})" if sub else ""))
                if not checked:
                    ref = sf.f(texts[:4], prompt=task.prompt, strip_prompt_space=True)
                    ref_space = sf.f(texts[:4], prompt=task.prompt)
                    a, b, _ = two_position_f(lm, texts[:4], task.prompt)
                    err = max(np.abs(b - ref).max(), np.abs(a - ref_space).max())
                    print(f"  one-pass check vs SentenceFeatures: max abs diff {err:.2e}")
                    if err > 1e-3 * max(1.0, np.abs(ref).max()):
                        raise SystemExit("one-pass features differ from SentenceFeatures")
                    checked = True
                a, b, keep = two_position_f(lm, texts, task.prompt)
                z[f"{split}_space"], z[f"{split}_strip"], z[f"{split}_y"] = a, b, y[keep]
            np.savez(npz, **z)
        entry = {"n_train": int(len(z["train_y"])), "n_test": int(len(z["test_y"])),
                 "prompt": task.prompt, "features_seconds": round(time.time() - t0, 1)}
        for choice in ("space", "strip"):
            for feat in ("f", "phi_p"):
                Xtr, Xte = z[f"train_{choice}"], z[f"test_{choice}"]
                if feat == "phi_p":
                    Xtr, Xte = sf.derive(Xtr, ["phi_p"])["phi_p"], sf.derive(Xte, ["phi_p"])["phi_p"]
                t1 = time.time()
                r = logistic_probe(Xtr, z["train_y"], Xte, z["test_y"], **task.probe_solver(feat))
                entry[f"{feat}_{choice}"] = r["test_accuracy"]
                print(f"  {name} {feat:6s} {choice:5s} test {100 * r['test_accuracy']:.1f} ({time.time() - t1:.0f}s)")
            if task.posneg_words and task.num_classes == 2:
                word_ids, variants, class_of_id = task_word_ids(lm.tokenizer, task.replace(class_words=task.posneg_words))
                phi = np.asarray(lm.output_embeddings())
                cols = word_ids["class"]
                scores = z[f"test_{choice}"] @ phi[cols].T
                for cal in (False, True):
                    zs = zero_shot_probe(scores, z["test_y"], cols, class_of_id, task.num_classes,
                                         score_type="logits", calibrate=cal)
                    key = f"zeroshot_posneg{'_calibrated' if cal else ''}_{choice}"
                    entry[key] = zs["accuracy"]
                    print(f"  {name} {key}: {100 * zs['accuracy']:.1f}")
        results["tasks"][name] = entry
        write_json(res_path, results)
    print(json.dumps(results["tasks"], indent=1))
    write_report(results, args.out)


def write_report(results, out):
    """REPORT.md: one row per task, test accuracy (%) with the trailing space kept vs stripped."""
    from tflm.atomic import write_atomic
    from tflm.report import markdown_table

    cols = [("f", "f"), ("phi_p", "phi_p"), ("zeroshot_posneg", "zero-shot posneg"),
            ("zeroshot_posneg_calibrated", "zero-shot posneg, calibrated")]
    header = ["task", "train / test"] + [f"{label} {c}" for _, label in cols for c in ("kept", "stripped")]
    rows = []
    for name, e in results["tasks"].items():
        cells = []
        for key, _ in cols:
            for c in ("space", "strip"):
                v = e.get(f"{key}_{c}")
                cells.append("-" if v is None else f"{100 * v:.1f}")
        rows.append([name + "*", f"{e['n_train']:,} / {e['n_test']:,}"] + cells)
    text = "\n".join([
        f"# The prompt's trailing space on {results['model']} (tokenizer {results['tokenizer']})", "",
        "Prompted rows (`*`), test accuracy (%), paper probe protocol (`tflm.probes.logistic_probe`). "
        f"Seeded subsamples (seed {results['seed']}): train {results['max_train']:,}, test {results['max_test']:,} "
        "except SST-2 (whole test set). CR here uses its train/test files, not the 10 random 90/10 splits. "
        "Both choices come from one forward pass per text (f one token before the end equals f of the "
        "stripped prompt; checked against SentenceFeatures, max abs diff 0).", "",
        markdown_table(header, rows), "", "Command:", "", f"    {results['command']}", ""])
    write_atomic(os.path.join(out, "REPORT.md"), text)


if __name__ == "__main__":
    main()
