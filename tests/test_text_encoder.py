"""`TextEncoder`: the one text -> ids rule, and the exported predict.py giving the same ids without tflm."""

import json
import os
import subprocess
import sys
import textwrap

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tflm.finetune.export import copy_predict_py  # noqa: E402
from tflm.tokenization import TextEncoder, gpt2_tokenizer  # noqa: E402
from tflm.tokenization.text_encoding import RULE, pad_batch  # noqa: E402

PROMPT = " This movie is "
LONG = "it 's a charming , witty and often surprising film that never quite lands . " * 12
TEXTS = ["a gorgeous , witty film", "a dull mess", LONG, "!", "c\n\nd " + LONG]


@pytest.fixture(scope="module")
def tok():
    return gpt2_tokenizer()


def test_fits_tokenizes_text_and_prompt_jointly(tok):
    enc = TextEncoder(tok, PROMPT, max_length=64)
    (ids,), truncated = enc.encode(["great"])
    assert truncated == 0 and list(ids) == tok.encode("great" + PROMPT)
    assert enc.prompt_ids == tok.encode(PROMPT)


def test_too_long_keeps_whole_prompt_and_end_of_text(tok):
    enc = TextEncoder(tok, PROMPT, max_length=32)
    (ids,), truncated = enc.encode([LONG])
    p = tok.encode(PROMPT)
    assert truncated == 1 and len(ids) == 32
    assert list(ids) == tok.encode(LONG)[-(32 - len(p)):] + p
    no_prompt = TextEncoder(tok, None, max_length=32)
    (ids,), truncated = no_prompt.encode([LONG])
    assert truncated == 1 and list(ids) == tok.encode(LONG)[-32:]


def test_strip_prompt_space_drops_the_space_token(tok):
    (a,), _ = TextEncoder(tok, PROMPT, 64).encode(["great"])
    (b,), _ = TextEncoder(tok, PROMPT, 64, strip_prompt_space=True).encode(["great"])
    assert a[-1] == 220 and list(b) == list(a[:-1])


def test_padding_and_call(tok):
    enc = TextEncoder(tok, PROMPT, 32, pad_id=7)
    ids, _ = enc.encode(TEXTS)
    x = enc(TEXTS)
    assert x["token_ids"].shape == (len(TEXTS), max(len(i) for i in ids)) == x["padding_mask"].shape
    for row, mask, ref in zip(x["token_ids"], x["padding_mask"], ids):
        assert list(row[mask == 1]) == list(ref) and np.all(row[mask == 0] == 7) and mask.sum() == len(ref)
    token_ids, mask = pad_batch([[1, 2], [3]], length=4)
    assert token_ids.tolist() == [[1, 2, 0, 0], [3, 0, 0, 0]] and mask.tolist() == [[1, 1, 0, 0], [1, 0, 0, 0]]
    with pytest.raises(ValueError, match="more than the padded length"):
        pad_batch([[1, 2, 3]], length=2)


def test_bad_input_names_the_problem(tok):
    with pytest.raises(ValueError, match="does not fit max_length 3"):
        TextEncoder(tok, PROMPT, max_length=3)
    with pytest.raises(ValueError, match="has no tokens"):
        TextEncoder(tok, "", max_length=8)
    with pytest.raises(ValueError, match="max_length must be a positive integer"):
        TextEncoder(tok, None, max_length=0)
    with pytest.raises(ValueError, match="text 1 has no tokens"):
        TextEncoder(tok, None, 8).encode(["fine", ""])


def test_get_config_round_trip(tok):
    enc = TextEncoder(tok, PROMPT, 32, strip_prompt_space=True, pad_id=3)
    config = enc.get_config()
    import inspect

    assert set(config) == set(inspect.signature(TextEncoder.__init__).parameters) - {"self"}
    again = TextEncoder.from_config(json.loads(json.dumps(config)))
    a, b = enc(TEXTS), again(TEXTS)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert again.get_config() == config


@pytest.mark.parametrize("prompt,strip", [(PROMPT, False), (PROMPT, True), (None, False)])
def test_exported_predict_py_encodes_like_the_encoder_without_tflm(tok, tmp_path, prompt, strip):
    """predict.py + text_encoding.py, copied as the export copies them, in a process without tflm."""
    enc = TextEncoder(tok, prompt, 32, strip_prompt_space=strip)
    folder = tmp_path / "export"
    folder.mkdir()
    copy_predict_py(str(folder))
    tok.save(str(folder))
    meta = {"prompt": prompt, "strip_prompt_space": strip, "max_length": 32, "tokenizer": "tokenizer.json",
            "truncation": RULE}
    (folder / "tflm_export.json").write_text(json.dumps(meta))
    code = f"""
        import importlib.util, json, sys
        import tokenizers
        spec = importlib.util.spec_from_file_location("predict", {str(folder / 'predict.py')!r})
        predict = importlib.util.module_from_spec(spec); spec.loader.exec_module(predict)
        tok = tokenizers.Tokenizer.from_file({str(folder / 'tokenizer.json')!r})
        meta = json.load(open({str(folder / 'tflm_export.json')!r}))
        ids = predict.encode(tok, meta, {TEXTS!r})
        print(json.dumps({{"ids": [list(map(int, x)) for x in ids],
                          "tflm_loaded": any(k == "tflm" or k.startswith("tflm.") for k in sys.modules)}}))
    """
    env = dict(os.environ, PYTHONPATH="", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    ref, truncated = enc.encode(TEXTS)
    assert truncated == 2  # the two long reviews: the comparison covers truncation
    assert res["tflm_loaded"] is False
    assert res["ids"] == [list(map(int, x)) for x in ref]
