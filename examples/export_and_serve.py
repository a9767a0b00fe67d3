"""Export a probe on a language model as a TensorFlow SavedModel, then serve it with plain TensorFlow.

    python examples/export_and_serve.py export --out sst2_probe            # shipped IMDb GPT-2 model
    python examples/export_and_serve.py export --model tiny-gpt2 --tiny --out /tmp/probe
    python examples/export_and_serve.py serve sst2_probe "a gorgeous film ." "dull and lifeless ."

`export` (needs tflm) fits the paper's logistic-regression probe on f with the
task's prompt and writes one SavedModel: the frozen LM, the feature and the
probe's weights, plus tokenizer.json and tflm_export.json.

`serve` needs only tensorflow, tokenizers and numpy (it never imports tflm): it
applies the recorded prompt with the exact tokenizer, pads, and calls the
``serving_default`` signature (``token_ids``, ``padding_mask`` -> ``probabilities``).
Texts longer than the recorded max_length are refused here; ``predict.py`` in the
export folder also applies the truncation rule.
"""

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.join(HERE, "..", "saved_models", "imdb-gpt2-small-xent")
TINY = {"max_train": 64}


def export(out, model=DEFAULT_MODEL, task="sst2", max_train=None, data_dir=None, seed=0):
    """Fit the paper's probe on f (with the task's prompt) and export it; returns (lm, probe)."""
    import tflm
    from tflm.features import SentenceFeatures
    from tflm.probes.export import export_sklearn_probe
    from tflm.tasks.splits import subsample
    from tflm.probes import LogisticProbe
    from tflm.tasks import get_task, load_split

    lm = tflm.load_lm(model)
    task = get_task(task)
    texts, labels = load_split(task, "train", data_dir)
    texts, labels, _ = subsample(list(texts), np.asarray(labels), max_train, seed)
    f = SentenceFeatures(lm, progress=False).f(texts, prompt=task.prompt)
    probe = LogisticProbe(**task.probe_solver("f")).fit(f, labels)
    label_names = ["negative", "positive"] if task.num_classes == 2 else None
    export_sklearn_probe(lm, probe, out, prompt=task.prompt, feature="f", label_names=label_names)
    return lm, probe


def serve(path, texts):
    """Class probabilities, (len(texts), num_classes), from the SavedModel in `path` (no tflm)."""
    import tensorflow as tf
    import tokenizers

    with open(os.path.join(path, "tflm_export.json"), encoding="utf-8") as f:
        meta = json.load(f)
    tok = tokenizers.Tokenizer.from_file(os.path.join(path, meta["tokenizer"]))
    prompt = meta["prompt"] or ""
    if prompt and meta["strip_prompt_space"]:
        prompt = prompt.rstrip(" ")
    ids = [tok.encode(t + prompt, add_special_tokens=False).ids for t in texts]
    too_long = [i for i, x in enumerate(ids) if len(x) > meta["max_length"]]
    if too_long:
        raise ValueError(f"texts {too_long} are longer than {meta['max_length']} tokens; use predict.py in {path}")
    n = max(len(x) for x in ids)
    token_ids = np.array([x + [meta["pad_id"]] * (n - len(x)) for x in ids], np.int32)
    padding_mask = np.array([[1] * len(x) + [0] * (n - len(x)) for x in ids], np.int32)
    fn = tf.saved_model.load(path).signatures[meta["signature"]]
    return fn(token_ids=token_ids, padding_mask=padding_mask)["probabilities"].numpy(), meta["label_names"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="fit the probe and write the SavedModel (needs tflm)")
    e.add_argument("--out", required=True, help="export folder")
    e.add_argument("--model", default=DEFAULT_MODEL, help="model SPEC (default: the shipped IMDb GPT-2 model)")
    e.add_argument("--task", default="sst2")
    e.add_argument("--max-train", type=int, default=None, help="seeded subsample of the training set")
    e.add_argument("--tiny", action="store_true", help=f"a quick run: {TINY}")
    e.add_argument("--data", default=None, help="folder of the task's tsv files (default: shipped SST-2)")
    s = sub.add_parser("serve", help="classify texts with an export (tensorflow + tokenizers only)")
    s.add_argument("path")
    s.add_argument("texts", nargs="*", help="texts (default: one per line on stdin)")
    args = p.parse_args(argv)
    if args.command == "export":
        max_train = args.max_train if args.max_train is not None else (TINY["max_train"] if args.tiny else None)
        export(args.out, args.model, args.task, max_train=max_train, data_dir=args.data)
        print(f"exported to {args.out}")
        return None
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    probs, names = serve(args.path, texts)
    for t, row in zip(texts, probs):
        print(json.dumps({"text": t, "label": names[int(np.argmax(row))], "probabilities": row.tolist()}))
    return probs


if __name__ == "__main__":
    main()
