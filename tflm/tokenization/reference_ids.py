"""Reference token ids recorded from another tokenizer implementation (llama.cpp), and checks against them.

A fixture is a gzip'd JSON object ``{"reference": str, "model": str,
"texts": [{"task": str, "text": str, "ids": [int]}...]}``; the tests compare
tflm's tokenizer with it, so they need neither llama-cpp-python nor the data.
"""

import csv
import gzip
import json
import os

from tflm.atomic import atomic_path

SST2 = "sst2"
# Texts the task data rarely holds: whitespace runs, newlines, tabs, control-token text, bytes
# outside the vocabulary, digits, accents, CJK, emoji.
EDGE_TEXTS = (
    "The capital of France is", " leading space", "trailing space ", "two  spaces   three", "tab\there",
    "line\nbreak\n\nparagraph\n\n\n", "<bos> is text here, <start_of_turn>user too", "<unused0>",
    "1234567890 3.14159 1,000,000", "naïve café déjà vu", "日本語のテキスト", "emoji 😀🎉 and ☃",
    "\u2581already escaped", "\x00\x01 control bytes", "ÆØÅ æøå ß", "a" * 300, "  ", "\r\n windows",
)


def read_test_texts(data_dir, per_task=300):
    """[(task, text)]: every SST-2 test text, the first `per_task` test texts of each other task, `EDGE_TEXTS`."""
    tasks = sorted(name for name in os.listdir(data_dir)
                   if os.path.isfile(os.path.join(data_dir, name, "test.tsv")))
    out = []
    for task in sorted(tasks, key=lambda t: (t != SST2, t)):
        with open(os.path.join(data_dir, task, "test.tsv"), newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        texts = [r["text"] for r in rows]
        out += [(task, t) for t in (texts if task == SST2 else texts[:per_task])]
    return out + [("edge", t) for t in EDGE_TEXTS]


def llama_cpp_ids(model_path, texts):
    """llama.cpp's ids of each text: no BOS, control pieces as plain text (`special=False`)."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=model_path, vocab_only=True, verbose=False)
    return [llm.tokenize(t.encode("utf-8"), add_bos=False, special=False) for t in texts]


def write_fixture(path, reference, model, entries):
    """Atomically write a gzip'd JSON fixture."""
    with atomic_path(path) as tmp, open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(json.dumps({"reference": reference, "model": model, "texts": entries},
                           ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def read_fixture(path):
    with gzip.open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def mismatches(tokenizer, fixture):
    """[(task, text, reference ids, tflm ids)] for every fixture text the tokenizer encodes differently."""
    entries = fixture["texts"]
    got = tokenizer.encode_batch([e["text"] for e in entries])
    return [(e["task"], e["text"], e["ids"], list(g)) for e, g in zip(entries, got) if list(g) != e["ids"]]


def record(data_dir, out, per_task=300, model_path=None):
    """Record llama.cpp's ids of `read_test_texts(data_dir)` for Gemma 3 270M; a summary dict."""
    import llama_cpp

    from tflm.models.specs import resolve_gemma3

    model_path = model_path or resolve_gemma3()
    pairs = read_test_texts(data_dir, per_task)
    ids = llama_cpp_ids(model_path, [t for _, t in pairs])
    entries = [{"task": task, "text": text, "ids": list(map(int, i))} for (task, text), i in zip(pairs, ids)]
    write_fixture(out, f"llama-cpp-python {llama_cpp.__version__}", os.path.basename(model_path), entries)
    return {"texts": len(entries), "tasks": sorted({e["task"] for e in entries}), "out": out,
            "bytes": os.path.getsize(out)}
