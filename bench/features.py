"""Benchmark: feature extraction, tflm vs a reference-style pipeline, and peak memory vs N.

    python bench/features.py [--model SPEC] [--data ../shared/data]

1. End-to-end extraction of f (+ phi_p) for SST-2 train+test with the prompt: tflm
   (length-bucketed, token-budget batches) vs the reference code's batching (unsorted
   batches of 25, padded to the longest), same model, same token ids, same compiled
   forward function, in this process. Prints the wall-time ratio (target >= 1.8x).
2. Peak memory of phi_p over 20,000 vs 2,000 AG-News-length sentences with a tiny model,
   each in a fresh subprocess (ru_maxrss). Prints the ratio (target: within 10%).
"""

import argparse
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tflm import native_logs  # noqa: E402

native_logs.configure()  # before TensorFlow loads: no native log spam in the output

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "data")
DEFAULT_MODEL = os.path.join(HERE, "..", "saved_models", "imdb-gpt2-small-xent")


def reference_style_f(sf, ids, batch=25):
    """The reference's batching: input order, fixed batches of 25, padded to the batch's longest."""
    from tflm.tokenization.text_encoding import pad_batch

    out, padded = [], 0
    for start in range(0, len(ids), batch):
        tok, mask = pad_batch(ids[start:start + batch])
        padded += tok.size
        out.append(sf.forward(tok, mask, mask.sum(1, keepdims=True).astype(np.int32) - 1)[:, 0])
    return np.concatenate(out), padded


def speed(model, data):
    from tflm.features import SentenceFeatures
    from tflm.tokenization.text_encoder import encode_texts
    from tflm.models import load_lm
    from tflm.tasks import get_task, load_split

    lm = load_lm(model)
    task = get_task("sst2")
    texts = []
    for split in ("train", "test"):
        texts += list(load_split(task, split, data)[0])
    ids, _ = encode_texts(lm.tokenizer, texts, task.prompt, lm.max_sequence_length)
    real = sum(len(x) for x in ids)
    sf = SentenceFeatures(lm, progress=False)
    sf.f(texts[:200], prompt=task.prompt)  # warm up (tracing)
    reference_style_f(sf, ids[:200])
    t = time.time()
    ours = sf.f(texts, prompt=task.prompt)
    sf.derive(ours, ["phi_p"])
    t_ours = time.time() - t
    ours_padded = sf.last_stats["padded_tokens"]
    t = time.time()
    ref, ref_padded = reference_style_f(sf, ids)
    sf.derive(ref, ["phi_p"])
    t_ref = time.time() - t
    diff = float(np.abs(ours - ref).max())
    print(f"model {lm.name}: {len(texts)} texts, {real} real tokens (SST-2 train+test, with prompt)")
    print(f"  reference-style (unsorted, batches of 25): {t_ref:7.1f}s  padded/real tokens {ref_padded / real:.2f}")
    print(f"  tflm (bucketed, token budget)            : {t_ours:7.1f}s  padded/real tokens {ours_padded / real:.2f}")
    print(f"  speed-up {t_ref / t_ours:.2f}x (target >= 1.8x); max |f_tflm - f_ref| = {diff:.2e}")


def _peak_child(n, data):
    from tflm.features import SentenceFeatures
    from tflm.models import load_lm
    from tflm.tasks import get_task, load_split

    task = get_task("agnews")
    pool = []
    for split in ("train", "test"):
        pool += list(load_split(task, split, data)[0])
    texts = [pool[i % len(pool)] for i in range(n)]
    lm = load_lm("tiny-gpt2")
    sf = SentenceFeatures(lm, progress=False)
    f = sf.f(texts)
    phi_p = sf.derive(f, ["phi_p"])["phi_p"]
    assert phi_p.shape == (n, lm.hidden_dim)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def memory(data):
    peaks = {}
    for n in (2000, 20000):
        out = subprocess.run([sys.executable, __file__, "--peak-child", str(n), "--data", data],
                             capture_output=True, text=True, check=True)
        peaks[n] = int(out.stdout.strip().splitlines()[-1]) / 1024
    print(f"peak RSS, phi_p of AG-News texts with tiny-gpt2: 2,000 -> {peaks[2000]:.0f} MB, "
          f"20,000 -> {peaks[20000]:.0f} MB, ratio {peaks[20000] / peaks[2000]:.3f} (target <= 1.10)")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--peak-child", type=int)
    p.add_argument("--skip-speed", action="store_true")
    args = p.parse_args()
    if args.peak_child:
        return _peak_child(args.peak_child, args.data)
    if not args.skip_speed:
        speed(args.model, args.data)
    memory(args.data)


if __name__ == "__main__":
    main()
