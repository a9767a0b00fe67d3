"""Packed vs unpacked extraction on one LM, A/B in one process: row lengths, padding, first call.

    python bench/packing.py [--model SPEC] [--data ../shared/data] [--sst2-texts 600] [--imdb-texts 40]
                            [--pack-lengths 128,256,512] [--dtypes float32,bfloat16] [--repeats 1]

For each dtype and text set (SST-2 test: short; IMDb test: long) it runs `SentenceFeatures.f`
end to end with a fresh extractor (its first pass traces) unpacked and packed at each row length,
interleaved, and prints tok/s of real tokens (best of --repeats), the padding fraction and the
largest difference of f from the unpacked run. Then the first-call cost: a fresh extractor's
first `f` on 8 short texts minus the same call once traced, packed and unpacked.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tflm import native_logs  # noqa: E402

native_logs.configure()  # before TensorFlow loads

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "data")


def run_f(lm, texts, **kw):
    from tflm.features import SentenceFeatures

    t = time.perf_counter()
    sf = SentenceFeatures(lm, progress=False, **kw)
    f = sf.f(texts)
    return f, time.perf_counter() - t, sf.last_stats


def first_call(lm, texts, **kw):
    """Seconds of a fresh extractor's first f(texts) and of the same call again."""
    from tflm.features import SentenceFeatures

    sf = SentenceFeatures(lm, progress=False, **kw)
    t = time.perf_counter()
    sf.f(texts)
    first = time.perf_counter() - t
    t = time.perf_counter()
    sf.f(texts)
    return first, time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model SPEC (default SmolLM2 GGUF, else tiny-llama)")
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--sst2-texts", type=int, default=600)
    p.add_argument("--imdb-texts", type=int, default=40)
    p.add_argument("--pack-lengths", default="128,256,512")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)

    import tflm
    from tflm.models.gguf import find_smollm2_gguf
    from tflm.tasks import get_task, load_split

    base = tflm.load_lm(args.model or find_smollm2_gguf() or "tiny-llama")
    sets = {"sst2 test": list(load_split(get_task("sst2"), "test", args.data)[0])[:args.sst2_texts or None]}
    if os.path.isdir(os.path.join(args.data, "imdb")):
        sets["imdb test"] = list(load_split(get_task("imdb"), "test", args.data)[0])[:args.imdb_texts]
    else:
        print(f"no IMDb data under {args.data}: long texts skipped")
    print(f"model {base.name}: {base.architecture}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    variants = [("unpacked", dict(packing=False))] + [
        (f"packed {n}", dict(packing=True, pack_length=int(n))) for n in args.pack_lengths.split(",")]
    for dtype in args.dtypes.split(","):
        lm = base.with_dtype(dtype)
        for name, texts in sets.items():
            best, pad, diff, ref = {}, {}, {}, None
            for _ in range(args.repeats):
                for label, kw in variants:
                    f, s, stats = run_f(lm, texts, **kw)
                    ref = f if ref is None else ref
                    best[label] = max(best.get(label, 0.0), stats["computed_tokens"] / s)
                    pad[label] = stats["padding"]
                    diff[label] = float(np.abs(f - ref).max() / np.abs(ref).max())
            print(f"  {dtype:8s} {name:9s} ({len(texts)} texts)")
            for label, _ in variants:
                print(f"    {label:12s} {best[label]:8,.0f} tok/s  padding {pad[label]:6.1%}  "
                      f"x{best[label] / best['unpacked']:.2f} of unpacked  max rel diff f {diff[label]:.1e}", flush=True)
        short = sets["sst2 test"][:8]
        for label, kw in (variants[0], variants[min(2, len(variants) - 1)]):
            first, again = first_call(lm, short, **kw)
            print(f"  {dtype:8s} first call, {label:12s}: {first:.2f}s, traced {again:.2f}s: first-call cost "
                  f"{first - again:.2f}s", flush=True)


if __name__ == "__main__":
    main()
