"""Probe a language model's sentence features the paper's way, through tflm's Python API.

    python examples/probe_features.py                         # shipped IMDb GPT-2 model, full SST-2
    python examples/probe_features.py --model tiny-gpt2 --tiny
    python examples/probe_features.py --model SmolLM2-135M-Instruct.Q4_1.gguf --max-train 2000

Loads a model (any SPEC `tflm.load_lm` accepts), computes f (the final hidden
state at the last real token) on SST-2 train and test with the task's prompt
' This movie is ', derives phi_p = softmax(f Phi^T) Phi and the "subset"
next-word logits from f, fits the paper's logistic-regression probe on each and
prints the test accuracies (the "sst2*" row of the paper's Table 1).
"""

import argparse
import os

import numpy as np

import tflm
from tflm.features import SentenceFeatures
from tflm.tasks.splits import subsample
from tflm.probes import logistic_probe
from tflm.report import write_json
from tflm.tasks import get_task, load_split
from tflm.tokenization import word_token_ids

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.join(HERE, "..", "saved_models", "imdb-gpt2-small-xent")
TINY = {"max_train": 64, "max_test": 64}


def probe_features(model=DEFAULT_MODEL, task="sst2", features=("f", "phi_p", "subset"), prompt=True,
                   max_train=None, max_test=None, data_dir=None, seed=0):
    """Fit the paper's probe on each feature; returns {"model", "task", "prompt", "results": {feature: ...}}.

    Each result holds test_accuracy, C, n_train, n_test and test_predictions
    (a list, in the order of the returned test_labels).
    """
    lm = tflm.load_lm(model)
    task = get_task(task)
    train_texts, y_train = load_split(task, "train", data_dir)
    test_texts, y_test = load_split(task, "test", data_dir)
    train_texts, y_train, _ = subsample(list(train_texts), np.asarray(y_train), max_train, seed)
    test_texts, y_test, _ = subsample(list(test_texts), np.asarray(y_test), max_test, seed)

    word_ids = {name: word_token_ids(lm.tokenizer, words)[0] for name, words in task.word_lists.items()}
    sf = SentenceFeatures(lm, word_ids=word_ids, progress=False)
    text_prompt = task.prompt if prompt else None
    f_train = sf.f(train_texts, prompt=text_prompt)
    f_test = sf.f(test_texts, prompt=text_prompt)
    derived = [name for name in features if name != "f"]
    X_train = {"f": f_train, **sf.derive(f_train, derived)} if derived else {"f": f_train}
    X_test = {"f": f_test, **sf.derive(f_test, derived)} if derived else {"f": f_test}

    results = {}
    for name in features:
        res = logistic_probe(X_train[name], y_train, X_test[name], y_test, **task.probe_solver(name))
        results[name] = {
            "test_accuracy": res["test_accuracy"],
            "C": res["C"],
            "n_train": res["n_train"],
            "n_test": res["n_test"],
            "test_predictions": np.asarray(res["test_predictions"]).tolist(),
        }
    return {"model": lm.name, "task": task.name, "prompt": text_prompt, "test_labels": np.asarray(y_test).tolist(),
            "results": results}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL, help="model SPEC (default: the shipped IMDb GPT-2 model)")
    p.add_argument("--task", default="sst2")
    p.add_argument("--features", default="f,phi_p,subset")
    p.add_argument("--no-prompt", action="store_true", help="features without the task's prompt")
    p.add_argument("--max-train", type=int, default=None, help="seeded subsample of the training set")
    p.add_argument("--max-test", type=int, default=None, help="seeded subsample of the test set")
    p.add_argument("--tiny", action="store_true", help=f"a quick run: {TINY}")
    p.add_argument("--data", default=None, help="folder of the task's tsv files (default: shipped SST-2)")
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)
    limits = dict(TINY) if args.tiny else {}
    limits.update({k: v for k, v in (("max_train", args.max_train), ("max_test", args.max_test)) if v is not None})
    out = probe_features(args.model, args.task, args.features.split(","), not args.no_prompt, data_dir=args.data,
                         **limits)
    for name, res in out["results"].items():
        print(f"{out['task']}{'*' if out['prompt'] else ''} {name:8s} test accuracy {100 * res['test_accuracy']:5.1f}%"
              f"  (n_train {res['n_train']}, n_test {res['n_test']})")
    if args.out:
        write_json(args.out, out)
    return out


if __name__ == "__main__":
    main()
