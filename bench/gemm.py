"""The matmul engine under both libraries: TensorFlow vs torch on one GEMM shape, per dtype.

    python bench/gemm.py [--m 8192] [--k 576] [--n 1536] [--repeats 20]

The default shape is SmolLM2's FFN up-projection over one 8,192-token batch. Both
libraries call oneDNN's AMX brgemm kernel on this CPU (check with ONEDNN_VERBOSE=1);
the GFLOPS they reach set the ceiling of a bf16 forward pass, which is ~80% dense
matmuls at SST-2 lengths (bench/profile_lm.py). It prints GFLOPS and torch / TF.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tflm import native_logs  # noqa: E402

native_logs.configure()  # before TensorFlow loads: no native log spam in the output


def best_seconds(fn, repeats):
    fn()
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--m", type=int, default=8192)
    p.add_argument("--k", type=int, default=576)
    p.add_argument("--n", type=int, default=1536)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)

    import tensorflow as tf
    import torch

    flop = 2.0 * args.m * args.k * args.n
    print(f"C = A B with A {args.m}x{args.k}, B {args.k}x{args.n}; TensorFlow {tf.__version__} "
          f"({tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()} threads), torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads); load average {os.getloadavg()[0]:.1f}")
    for name in ("bfloat16", "float32"):
        a = tf.cast(tf.random.normal((args.m, args.k)), name)
        b = tf.cast(tf.random.normal((args.k, args.n)), name)
        matmul = tf.function(lambda: tf.matmul(a, b))
        tf_s = best_seconds(matmul, args.repeats)  # CPU ops run synchronously
        ta, tb = (torch.from_numpy(tf.cast(x, "float32").numpy()).to(getattr(torch, name)) for x in (a, b))
        with torch.inference_mode():
            torch_s = best_seconds(lambda: ta @ tb, args.repeats)
        print(f"{name:8s} TensorFlow {flop / tf_s / 1e9:7,.0f} GFLOPS   torch {flop / torch_s / 1e9:7,.0f} GFLOPS   "
              f"torch / TF {tf_s / torch_s:.2f}")


if __name__ == "__main__":
    main()
