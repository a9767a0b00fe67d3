"""The matmul engine under both libraries: TensorFlow vs torch on one GEMM shape, per dtype.

    python bench/gemm.py [--m 8192] [--k 576] [--n 1536] [--repeats 20] [--threads N]

The default shape is SmolLM2's FFN up-projection over one 8,192-token batch. Both
libraries call oneDNN's AMX brgemm kernel on this CPU (check with ONEDNN_VERBOSE=1);
the GFLOPS they reach bound a forward pass, whose dense matmuls are 39% (bf16) and 77%
(float32) of its time at 256 x 32 tokens (bench/profile_lm.py). It prints GFLOPS and torch / TF, for B
stored K x N (`A @ B`) and stored N x K (`A @ B^T`, the layout of torch's `Linear` weight).
--threads N runs both libraries on N threads (per-thread speed of the kernel).
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
    p.add_argument("--threads", type=int, default=0, help="threads for both libraries (0: their defaults)")
    args = p.parse_args(argv)

    import tensorflow as tf
    import torch

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        torch.set_num_threads(args.threads)

    flop = 2.0 * args.m * args.k * args.n
    print(f"C = A B with A {args.m}x{args.k}, B {args.k}x{args.n}; TensorFlow {tf.__version__} "
          f"({tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()} threads), torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads); load average {os.getloadavg()[0]:.1f}")
    for name in ("bfloat16", "float32"):
        a = tf.cast(tf.random.normal((args.m, args.k)), name)
        b = tf.cast(tf.random.normal((args.k, args.n)), name)
        bt = tf.transpose(b)
        ta, tb = (torch.from_numpy(tf.cast(x, "float32").numpy()).to(getattr(torch, name)) for x in (a, b))
        tbt = tb.t().contiguous()
        layouts = (("A @ B", tf.function(lambda: tf.matmul(a, b)), lambda: ta @ tb),
                   ("A @ B^T", tf.function(lambda: tf.matmul(a, bt, transpose_b=True)),
                    lambda: torch.nn.functional.linear(ta, tbt)))
        for layout, tf_fn, torch_fn in layouts:
            tf_s = best_seconds(tf_fn, args.repeats)  # CPU ops run synchronously
            with torch.inference_mode():
                torch_s = best_seconds(torch_fn, args.repeats)
            print(f"{name:8s} {layout:7s} TensorFlow {flop / tf_s / 1e9:7,.0f} GFLOPS ({tf_s * 1e3:6.2f} ms)   "
                  f"torch {flop / torch_s / 1e9:7,.0f} GFLOPS ({torch_s * 1e3:6.2f} ms)   torch / TF {tf_s / torch_s:.2f}")


if __name__ == "__main__":
    main()
