"""What the per-command first call of feature extraction costs, and what each option buys.

    python bench/first_call.py [--model SPEC] [--dtype float32] [--texts 8]

Each option runs in a fresh process (a command's situation): load the LM, then time a fresh
extractor's first `f` on N short SST-2 sentences and the same call once traced; the difference is
the first-call cost (Python tracing + first execution). Options:

- `baseline`: the default (packed) extractor;
- `unpacked`: `packing=False` (one padded shape per length bucket);
- `grappler-off`: TensorFlow's graph optimizer disabled (`disable_meta_optimizer`);
- `second-extractor`: a second fresh extractor on the same LM in the same process, after the
  first one traced (what a multi-task command such as `tflm reproduce` pays per extractor);
- `tokenize`: the tokenization of all 1,821 SST-2 test texts, the work a warm-up on a tiny batch
  could overlap with.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
OPTIONS = ("baseline", "unpacked", "grappler-off", "second-extractor", "tokenize")


def child(option, model, dtype, n):
    from tflm import native_logs

    native_logs.configure()
    import tensorflow as tf

    if option == "grappler-off":
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    from tflm.features import SentenceFeatures
    from tflm.models import load_lm
    from tflm.tasks.splits import load_texts

    lm = load_lm(model, dtype)
    texts, _, _ = load_texts("sst2", "test")
    if option == "tokenize":
        t = time.perf_counter()
        lm.tokenizer.encode_batch(list(texts))
        return {"option": option, "seconds": time.perf_counter() - t}
    kw = {"packing": False} if option == "unpacked" else {}

    def first_and_again():
        sf = SentenceFeatures(lm, progress=False, **kw)
        t = time.perf_counter()
        sf.f(texts[:n])
        first = time.perf_counter() - t
        t = time.perf_counter()
        sf.f(texts[:n])
        return first, time.perf_counter() - t

    first, again = first_and_again()
    if option == "second-extractor":
        first, again = first_and_again()
    return {"option": option, "first": first, "again": again, "cost": first - again}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--texts", type=int, default=8)
    p.add_argument("--options", default=",".join(OPTIONS))
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.model, args.dtype, args.texts)))
        return 0
    print(f"model {args.model}, {args.dtype}, first f on {args.texts} SST-2 test sentences, each option in a fresh "
          f"process; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for option in args.options.split(","):
        out = subprocess.run([sys.executable, __file__, "--child", option, "--model", args.model, "--dtype", args.dtype,
                              "--texts", str(args.texts)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if option == "tokenize":
            print(f"  {option:17s} {r['seconds']:.2f}s for 1,821 texts")
        else:
            print(f"  {option:17s} first call {r['first']:.2f}s, traced {r['again']:.2f}s: first-call cost {r['cost']:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
