"""Property-based fuzzing (hypothesis) of every loader of user files.

Targets: TSV task files, task.json, GGUF files, Hugging Face checkpoint folders and
feature-cache chunks. The property for each: the call returns a valid result, or
raises tflm's own error type (`DataError`, `ModelFileError`, `CacheError`, all
ValueErrors) with a message naming the file (and the line / field where there is
one). Never another exception, never a hang, never more memory than the file's
size suggests: `guard` interrupts an example that runs past its time or whose
traced Python/numpy allocations pass a bound, and the model targets replace the
keras-hub backbone classes by spies that refuse to build a backbone whose
parameters would not fit in the checkpoint (so a lying size cannot allocate).

Each target runs twice: a fast, derandomized profile in the default run
(`FAST` examples) and a long random one under ``-m slow`` (`LONG` examples).
"""

import contextlib
import functools
import json
import math
import os
import re
import signal
import struct
import tempfile
import time
import tracemalloc

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import example as hypothesis_example
from hypothesis import strategies as st

from tflm.features.feature_cache import CacheError, FeatureCache
from tflm.models.errors import ModelFileError
from tflm.tasks.errors import DataError
from tflm.tasks.loaders import load_tsv
from tflm.tasks.registry import task_from_folder
from tflm.tasks.task import MAX_NUM_CLASSES, Task

# examples per target: default run, -m slow
FAST = {"tsv": 60, "task_json": 60, "gguf": 40, "hf": 40, "cache": 60}
LONG = {"tsv": 5000, "task_json": 5000, "gguf": 2000, "hf": 2000, "cache": 5000}
_COMMON = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))


def fuzz_tests(target, *strategies, examples=()):
    """(fast test, slow test) running `check(*examples)` under hypothesis for `target`; the fast
    one also runs the explicit `examples` (one per kind of damage, so that each is covered)."""

    def wrap(check):
        trace = os.environ.get("TFLM_FUZZ_TRACE")  # a file: every example is appended before it runs

        if trace:
            inner = check

            @functools.wraps(inner)
            def check(*args, **kwargs):
                with open(trace, "a") as f:
                    f.write(f"{target} {args!r:.1000} {kwargs!r:.1000}\n")
                return inner(*args, **kwargs)

        fast = given(*strategies)(check)
        for ex in examples:
            fast = hypothesis_example(ex)(fast)
        fast = settings(max_examples=FAST[target], derandomize=True, **_COMMON)(fast)
        slow = settings(max_examples=LONG[target], **_COMMON)(given(*strategies)(check))
        return fast, pytest.mark.slow(slow)

    return wrap


class Runaway(Exception):
    """An example ran past its time or memory bound (a hang or an allocation the file does not justify)."""


@contextlib.contextmanager
def guard(max_bytes, seconds=60.0):
    """Run the block with traced allocations (tracemalloc) held under `max_bytes` and time under
    `seconds`: a timer checks every 20 ms and raises `Runaway` into the block (before the machine
    runs out of memory). Yields a dict whose "peak" is the block's traced peak, in bytes."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.monotonic()
    out = {"peak": 0}

    def check(signum, frame):
        used = tracemalloc.get_traced_memory()[0] - base
        if used > max_bytes:
            raise Runaway(f"traced allocations {used:,} B > bound {max_bytes:,} B")
        if time.monotonic() - t0 > seconds:
            raise Runaway(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, check)
    signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)
    try:
        yield out
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        out["peak"] = tracemalloc.get_traced_memory()[1] - base
        if started:
            tracemalloc.stop()
    if out["peak"] > max_bytes:
        raise Runaway(f"traced peak {out['peak']:,} B > bound {max_bytes:,} B")


def one_line(e):
    msg = str(e)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


# --- TSV task files -----------------------------------------------------------------------------
_TEXT = st.text(st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=30)
_VALID_TEXT = st.builds(lambda a, b: a + "x" + b, _TEXT, _TEXT)  # never blank
_BAD_LABEL = st.one_of(
    st.integers(-10**30, 10**30).map(str), st.sampled_from(["", " ", "-", "+1", "1.0", "１", "٣", "label", "99999999999",
                                                            "9" * 5000, "0x1", "1e3", "\x00", "nan"]),
    _TEXT)


@st.composite
def tsv_files(draw):
    """(bytes, num_classes or None, expected (texts, labels) or None, must_refuse)."""
    k = draw(st.sampled_from([None, 2, 5]))
    hi = (k or 7) - 1
    rows = draw(st.lists(st.tuples(st.integers(0, hi), _VALID_TEXT), min_size=1, max_size=8))
    lines = [f"{' ' * draw(st.integers(0, 1))}{y}\t{t}" for y, t in rows]
    header = draw(st.booleans())
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    valid, refuse = True, False
    damage = draw(st.sampled_from(["none", "label", "no_tab", "empty_text", "blank_line", "nul", "huge_line",
                                   "lone_cr", "none", "none"]))
    i = draw(st.integers(0, len(lines) - 1))
    if damage == "label":
        lines[i] = draw(_BAD_LABEL) + "\t" + rows[i][1]
        field = lines[i].split("\t", 1)[0].strip()
        plain = field[1:] if field[:1] == "-" else field
        if plain.isascii() and plain.isdigit() and len(plain) < 19 and 0 <= int(field) < (k or MAX_NUM_CLASSES) or (
                i == 0 and not header and field.lower() == "label"):
            valid = None  # still a valid label ("007", "-0", one in range), or the first line reads as a header
        else:
            valid, refuse = False, True
    elif damage == "no_tab":
        lines[i] = lines[i].replace("\t", " ")
        valid, refuse = False, "\t" not in rows[i][1]
    elif damage == "empty_text":
        lines[i] = f"{rows[i][0]}\t" + draw(st.sampled_from(["", " ", "\t ", "\x1c"]))
        valid, refuse = False, True
    elif damage == "blank_line":
        lines.insert(i, "")
        valid, refuse = False, True
    elif damage == "nul":
        lines[i] += "\x00\x00"
        rows[i] = (rows[i][0], rows[i][1] + "\x00\x00")
    elif damage == "huge_line":
        lines[i] += "w" * 300_000
        rows[i] = (rows[i][0], rows[i][1] + "w" * 300_000)
    elif damage == "lone_cr":
        eol = "\r"
        lines.append(lines[0])  # two lines at least: one of them ends in a bare \r
        valid, refuse = False, True
    text = ("label\ttext" + eol if header else "") + eol.join(lines) + eol * draw(st.integers(0, 2))
    encoding = draw(st.sampled_from(["utf-8"] * 6 + ["utf-8-sig", "utf-8-sig", "utf-16", "latin-1"]))
    data = text.encode(encoding, errors="replace")
    if encoding == "utf-16":
        valid, refuse = False, True  # its BOM (FF FE) is not UTF-8
    elif encoding == "latin-1" and data != text.encode("utf-8"):
        valid, refuse = False, False  # refused unless the bytes happen to be UTF-8 too
    if draw(st.integers(0, 4)) == 0:  # random bytes somewhere
        pos = draw(st.integers(0, len(data)))
        data = data[:pos] + draw(st.binary(min_size=1, max_size=4)) + data[pos:]
        valid, refuse = None, False
    expected = ([t for _, t in rows], [y for y, _ in rows]) if valid else None
    return data, k, expected, refuse


def _check_tsv_result(texts, labels, k):
    assert isinstance(texts, list) and all(isinstance(t, str) and t.strip() for t in texts)
    assert labels.dtype == np.int64 and labels.shape == (len(texts),) and len(texts) > 0
    assert labels.min() >= 0 and labels.max() < (k or MAX_NUM_CLASSES)


@fuzz_tests("tsv", tsv_files())
def _tsv(example):
    data, k, expected, must_refuse = example
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "train.tsv")
        with open(path, "wb") as f:
            f.write(data)
        try:
            with guard(24 * len(data) + 2**20, seconds=30):
                texts, labels = load_tsv(path, num_classes=k)
        except DataError as e:
            event("refused: " + re.sub(r"[0-9'\"].*", "", str(e).split(": ", 1)[1])[:30])
            msg = one_line(e)
            assert msg.startswith(path) and e.path == path, msg
            if e.line is not None:
                assert f"line {e.line}:" in msg and 1 <= e.line <= data.count(b"\n") + 2, msg
            assert expected is None, f"a valid file was refused: {msg}"
            return
        assert not must_refuse, f"a broken file was read: {len(texts)} texts, labels {labels.tolist()}"
        event("loaded" + (" (as generated)" if expected is not None else ""))
        _check_tsv_result(texts, labels, k)
        if expected is not None:
            assert texts == expected[0] and labels.tolist() == expected[1]


test_tsv_fuzz, test_tsv_fuzz_long = _tsv


# --- task.json ----------------------------------------------------------------------------------
_JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.sampled_from([10**11, 2**63]),
                       st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                       st.sampled_from(["fixed", "random_90_10", "f", "phi_p", "liblinear", "train", "wide"]))
_JSON = st.recursive(_JSON_LEAF, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                     max_leaves=8)
_TASK_FIELDS = [f for f in Task.__dataclass_fields__ if f != "data_dir"] + ["num_clases", "label"]


@st.composite
def task_json_files(draw):
    """Bytes of a task.json: a random subset of Task fields with random JSON values, or junk."""
    kind = draw(st.sampled_from(["fields", "fields", "fields", "fields", "not_object", "bytes", "deep"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "deep":
        n = draw(st.integers(10, 200_000))
        return b"[" * n + b"]" * n
    if kind == "not_object":
        return json.dumps(draw(_JSON), allow_nan=True).encode()
    config = draw(st.dictionaries(st.sampled_from(_TASK_FIELDS), _JSON, max_size=5))
    if draw(st.booleans()):  # plausible values for a few fields, so that valid tasks are drawn too
        config.update(draw(st.fixed_dictionaries({}, optional={
            "num_classes": st.integers(-1, 12), "prompt": st.sampled_from([None, "", " It is "]),
            "label_names": st.lists(st.sampled_from(["neg", "pos", "mid"]), max_size=3),
            "split_protocol": st.sampled_from(["fixed", "random_90_10"]),
            "n_splits": st.integers(-1, 3), "test_fraction": st.floats(-1, 2),
            "class_words": st.lists(st.sampled_from([":(", ":)"]), max_size=2),
            "probe_solver_exception": st.fixed_dictionaries({"features": st.lists(st.sampled_from(["f", "class"])),
                                                             "solver": st.just("sag")}),
        })))
    return json.dumps(config, allow_nan=True).encode()


@fuzz_tests("task_json", task_json_files())
def _task_json(data):
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "train.tsv"), "w") as f:
            f.write("0\tbad film\n1\tgood film\n")
        path = os.path.join(d, "task.json")
        with open(path, "wb") as f:
            f.write(data)
        try:
            with guard(64 * len(data) + 4 * 2**20, seconds=30):
                task = task_from_folder(d)
        except DataError as e:
            event("refused")
            msg = one_line(e)
            assert msg.startswith(path), msg
            return
        event("loaded")
        assert isinstance(task, Task) and 2 <= task.num_classes <= MAX_NUM_CLASSES
        assert Task.from_config(task.get_config()) == task  # a loaded task is a valid, serializable one
        json.dumps(task.get_config())


test_task_json_fuzz, test_task_json_fuzz_long = _task_json


# --- models: backbone spies ---------------------------------------------------------------------
def _backbone_params(kw):
    """A lower bound on the parameters a keras-hub GPT-2 / Llama backbone with these kwargs allocates."""
    d, L, V = kw["hidden_dim"], kw["num_layers"], kw["vocabulary_size"]
    ff = kw["intermediate_dim"]
    return V * d + L * (2 * d * d + 2 * d * ff) + kw.get("max_sequence_length", 0) * d


@contextlib.contextmanager
def backbone_spy(file_bytes):
    """keras-hub's GPT2Backbone / Llama3Backbone, refusing (Runaway) any build whose parameters,
    as float32, exceed what `file_bytes` of checkpoint can hold (at 2 bytes per value, float16)."""
    import keras_hub

    real = {n: getattr(keras_hub.models, n) for n in ("GPT2Backbone", "Llama3Backbone")}

    def spy(name):
        def build(**kw):
            need = _backbone_params(kw)
            if need * 2 > file_bytes + 4096:
                raise Runaway(f"{name}({kw}) would allocate {need:,} parameters for {file_bytes:,} bytes of weights")
            return real[name](**kw)

        return build

    try:
        for n in real:
            setattr(keras_hub.models, n, spy(n))
        yield
    finally:
        for n, cls in real.items():
            setattr(keras_hub.models, n, cls)


# --- GGUF files ---------------------------------------------------------------------------------
_GGUF_META = {"block_count": 1, "embedding_length": 8, "feed_forward_length": 16, "attention.head_count": 2,
              "attention.head_count_kv": 1, "context_length": 32, "attention.layer_norm_rms_epsilon": 1e-5}
_TOKENS = ["a", "b", "c", "ab"]


def write_tiny_gguf(path, meta=None, extra_kv=(), shapes=None, drop=(), lying=None):
    """A valid 1-layer Llama GGUF (d 8, 2 heads, 1 KV head, vocab 4, F32) via gguf's GGUFWriter.

    `meta` overrides llama.* values (any Python value: written with its GGUF type), `extra_kv`
    adds (key, value, GGUFValueType) entries, `shapes` overrides tensors' numpy shapes, `drop`
    leaves tensors out, and `lying={name: (shape, nbytes)}` declares tensors whose data the file
    does not contain (the header claims them, nothing follows).
    """
    import gguf

    rng = np.random.default_rng(0)
    m = {**_GGUF_META, **(meta or {})}
    w = gguf.GGUFWriter(str(path), "llama")
    for key, value in m.items():
        vtype = (gguf.GGUFValueType.BOOL if isinstance(value, bool) else gguf.GGUFValueType.UINT32
                 if isinstance(value, int) and 0 <= value < 2**32 else gguf.GGUFValueType.INT64
                 if isinstance(value, int) else gguf.GGUFValueType.FLOAT64 if isinstance(value, float)
                 else gguf.GGUFValueType.STRING if isinstance(value, str) else gguf.GGUFValueType.ARRAY)
        if vtype == gguf.GGUFValueType.INT64 and not -2**63 <= value < 2**63:
            vtype, value = gguf.GGUFValueType.STRING, str(value)
        w.add_key_value(f"llama.{key}", value, vtype,
                        sub_type=gguf.GGUFValueType.INT32 if vtype == gguf.GGUFValueType.ARRAY else None)
    for key, value, vtype in extra_kv:
        w.add_key_value(key, value, vtype)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(_TOKENS)
    w.add_token_merges(["a b"])
    d, ff, kv = 8, 16, 4
    tensors = {"token_embd.weight": (4, d), "output_norm.weight": (d,), "blk.0.attn_norm.weight": (d,),
               "blk.0.ffn_norm.weight": (d,), "blk.0.attn_q.weight": (d, d), "blk.0.attn_k.weight": (kv, d),
               "blk.0.attn_v.weight": (kv, d), "blk.0.attn_output.weight": (d, d),
               "blk.0.ffn_gate.weight": (ff, d), "blk.0.ffn_up.weight": (ff, d), "blk.0.ffn_down.weight": (d, ff)}
    tensors.update(shapes or {})
    if lying:
        for name, (shape, nbytes) in lying.items():
            w.add_tensor_info(name, shape, np.dtype(np.float32), nbytes)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        w.close()
        return path
    for name, shape in tensors.items():
        if name not in drop:
            w.add_tensor(name, rng.normal(size=shape).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


_VALUES = st.one_of(st.integers(-3, 40), st.sampled_from([0, 2**31, 10**10, 2**40, -2**40]),
                    st.floats(allow_nan=True), st.sampled_from(["wide", "", "8"]), st.booleans(),
                    st.lists(st.integers(0, 9), min_size=1, max_size=3))  # (GGUFWriter refuses empty arrays)
_GGUF_KEYS = list(_GGUF_META) + ["vocab_size", "rope.dimension_count", "rope.freq_base", "expert_count"]


@st.composite
def gguf_files(draw):
    """(how to write the file, byte damage): metadata / tensor-shape lies, then truncation or flips."""
    spec = {}
    kind = draw(st.sampled_from(["meta", "shapes", "lying", "bytes", "valid"]))
    if kind == "meta":
        spec["meta"] = draw(st.dictionaries(st.sampled_from(_GGUF_KEYS), _VALUES, min_size=1, max_size=3))
    elif kind == "shapes":
        names = ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.ffn_down.weight",
                 "output_norm.weight", "output.weight", "blk.1.attn_q.weight"]
        spec["shapes"] = draw(st.dictionaries(st.sampled_from(names), st.lists(st.integers(1, 20), min_size=1,
                                                                                max_size=3).map(tuple), max_size=2))
        spec["drop"] = draw(st.lists(st.sampled_from(names), max_size=2))
    elif kind == "lying":
        shape = tuple(draw(st.lists(st.sampled_from([1, 8, 2**16, 2**20, 2**31]), min_size=1, max_size=2)))
        spec["lying"] = {"token_embd.weight": (shape, 4 * math.prod(shape))}
    damage = []
    if kind == "bytes":
        damage = draw(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=6))
    cut = draw(st.one_of(st.none(), st.floats(0, 1))) if kind in ("bytes", "valid") else None
    header = draw(st.one_of(st.none(), st.tuples(st.sampled_from([8, 16]), st.sampled_from(
        [0, 1, 2**20, 2**40, 2**63, 2**64 - 1])))) if kind == "bytes" else None
    return spec, damage, cut, header


def _damage(data, damage, cut, header):
    data = bytearray(data)
    if header is not None:  # GGUF.tensor_count (offset 8) or GGUF.kv_count (16)
        data[header[0]:header[0] + 8] = struct.pack("<Q", header[1])
    for where, value in damage:
        data[min(int(where * len(data)), len(data) - 1)] = value
    if cut is not None:
        data = data[: int(cut * len(data))]
    return bytes(data)


def _gguf_call(path):
    from tflm.models.gguf import load_gguf

    size = os.path.getsize(path)
    with backbone_spy(size), guard(64 * size + 32 * 2**20, seconds=60):
        return load_gguf(path)


@fuzz_tests("gguf", gguf_files())
def _gguf(example):
    spec, damage, cut, header = example
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.gguf")
        write_tiny_gguf(path, **spec)
        with open(path, "rb") as f:
            data = f.read()
        changed = _damage(data, damage, cut, header)
        with open(path, "wb") as f:
            f.write(changed)
        try:
            lm = _gguf_call(path)
        except ModelFileError as e:
            event(f"refused ({e.field or re.sub(r'[0-9(].*', '', str(e).split(': ', 1)[-1])[:40]})")
            msg = one_line(e)
            assert msg.startswith(path) and msg.count(path) == 1, msg
            if e.field is not None:
                assert e.field in msg, msg
            assert spec or changed != data, f"the valid file was refused: {msg}"
            return
        event("loaded")
        assert lm.hidden_dim == 8 and lm.tokenizer.vocabulary_size == 4
        logits = np.asarray(lm.logits(np.array([[0, 1, 3]], dtype="int32"), np.ones((1, 3), dtype="int32")))
        assert logits.shape == (1, 3, 4) and np.isfinite(logits).all()


test_gguf_fuzz, test_gguf_fuzz_long = _gguf


def test_gguf_claiming_a_10_gb_tensor_is_refused_before_allocating(tmp_path):
    path = write_tiny_gguf(tmp_path / "liar.gguf", lying={"token_embd.weight": ((2**16, 40960), 10 * 2**30)})
    assert os.path.getsize(path) < 2048
    with pytest.raises(ModelFileError) as e:
        with backbone_spy(os.path.getsize(path)), guard(8 * 2**20, seconds=30) as g:
            from tflm.models.gguf import load_gguf

            load_gguf(path)
    assert str(path) in one_line(e.value) and "past the end of the file" in str(e.value)
    assert g["peak"] < 8 * 2**20
    four = tmp_path / "four.gguf"
    four.write_bytes(b"GGUF")
    with pytest.raises(ModelFileError, match=r"four.gguf: not a readable GGUF file .*past the end of the file"):
        from tflm.models.gguf import load_gguf

        load_gguf(four)


def test_gguf_metadata_array_claiming_2_to_the_60_elements_fails_fast(tmp_path):
    """gguf 0.19 alone loops for ever on it (every read past the end returns an empty array)."""
    import gguf

    path = write_tiny_gguf(tmp_path / "long.gguf", extra_kv=[("x.list", [1, 2, 3], gguf.GGUFValueType.ARRAY)])
    data = bytearray(path.read_bytes())
    at = data.index(b"x.list") + len(b"x.list") + 4 + 4  # key, value type ARRAY, item type
    data[at:at + 8] = struct.pack("<Q", 2**60)
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="past the end of the file"):
        with guard(16 * 2**20, seconds=20):
            from tflm.models.gguf import load_gguf

            load_gguf(path)


# --- Hugging Face checkpoint folders ------------------------------------------------------------
_HF_CONFIG = dict(model_type="gpt2", vocab_size=4, n_positions=16, n_embd=8, n_layer=1, n_head=2, n_inner=16,
                  activation_function="gelu_new", layer_norm_epsilon=1e-5, eos_token_id=3,
                  tie_word_embeddings=True)


def write_tiny_hf_gpt2(directory, config=None):
    """A tiny GPT-2 checkpoint folder (config.json, model.safetensors, a 4-token tokenizer.json), no torch."""
    import tokenizers
    from safetensors.numpy import save_file

    os.makedirs(directory, exist_ok=True)
    cfg = dict(_HF_CONFIG, **(config or {}))
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f, allow_nan=True)
    d, ff, rng = 8, 16, np.random.default_rng(0)
    shapes = {"wte.weight": (4, d), "wpe.weight": (16, d), "ln_f.weight": (d,), "ln_f.bias": (d,)}
    for name, shape in {"ln_1.weight": (d,), "ln_1.bias": (d,), "ln_2.weight": (d,), "ln_2.bias": (d,),
                        "attn.c_attn.weight": (d, 3 * d), "attn.c_attn.bias": (3 * d,),
                        "attn.c_proj.weight": (d, d), "attn.c_proj.bias": (d,), "mlp.c_fc.weight": (d, ff),
                        "mlp.c_fc.bias": (ff,), "mlp.c_proj.weight": (ff, d), "mlp.c_proj.bias": (d,)}.items():
        shapes[f"h.0.{name}"] = shape
    save_file({k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()},
              os.path.join(directory, "model.safetensors"))
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab={t: i for i, t in enumerate(_TOKENS)},
                                                     merges=[("a", "b")]))
    tok.save(os.path.join(directory, "tokenizer.json"))
    return directory


def _safetensors_header(data):
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


@st.composite
def hf_dirs(draw):
    """(config overrides, safetensors damage) of a tiny GPT-2 folder."""
    kind = draw(st.sampled_from(["config", "config", "header_length", "header", "bytes", "valid"]))
    config, damage = {}, None
    if kind == "config":
        keys = list(_HF_CONFIG) + ["n_ctx", "resid_pdrop", "scale_attn_weights", "add_cross_attention"]
        config = draw(st.dictionaries(st.sampled_from(keys), st.one_of(_VALUES, st.none()), min_size=1, max_size=3))
    elif kind == "header_length":
        damage = ("length", draw(st.sampled_from([0, 1, 7, 2**20, 2**32, 2**63, 2**64 - 1]) | st.integers(0, 4000)))
    elif kind == "header":
        damage = ("header", draw(st.sampled_from(["wte.weight", "h.0.attn.c_attn.weight", "ln_f.bias"])),
                  draw(st.sampled_from(["dtype", "shape", "data_offsets"])),
                  draw(st.one_of(st.sampled_from(["F16", "BF16", "I64", "F8_E4M3", "BOOL", "X9", "F64"]),
                                 st.lists(st.integers(0, 2**40), max_size=3), st.integers(-1, 10**12))))
    elif kind == "bytes":
        damage = ("bytes", draw(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=6)),
                  draw(st.one_of(st.none(), st.floats(0, 1))))
    return config, damage


def _damage_safetensors(path, damage):
    with open(path, "rb") as f:
        data = f.read()
    if damage[0] == "length":
        data = struct.pack("<Q", damage[1]) + data[8:]
    elif damage[0] == "header":
        header, body = _safetensors_header(data)
        _, name, field, value = damage
        header[name][field] = value
        blob = json.dumps(header).encode()
        data = struct.pack("<Q", len(blob)) + blob + body
    else:
        data = _damage(data, damage[1], damage[2], None)
    with open(path, "wb") as f:
        f.write(data)


@fuzz_tests("hf", hf_dirs())
def _hf(example):
    from tflm.models.hugging_face import load_hf_dir

    config, damage = example
    with tempfile.TemporaryDirectory() as d:
        write_tiny_hf_gpt2(d, config)
        weights = os.path.join(d, "model.safetensors")
        if damage is not None:
            _damage_safetensors(weights, damage)
        size = os.path.getsize(weights)
        try:
            with backbone_spy(size), guard(64 * size + 32 * 2**20, seconds=60):
                lm = load_hf_dir(d)
        except ModelFileError as e:
            event(f"refused ({e.field or re.sub(r'[0-9(].*', '', str(e).split(': ', 1)[-1])[:40]})")
            msg = one_line(e)
            assert msg.startswith(d) and msg.count(d) == 1, msg
            if e.field is not None:
                assert e.field in msg, msg
            if e.field in config:  # a config.json field is named with its file
                assert msg.startswith(os.path.join(d, "config.json")), msg
            assert config or damage, f"the valid folder was refused: {msg}"
            return
        event("loaded")
        assert lm.hidden_dim == 8
        logits = np.asarray(lm.logits(np.array([[0, 1, 3]], dtype="int32"), np.ones((1, 3), dtype="int32")))
        assert logits.shape == (1, 3, 4)


test_hf_fuzz, test_hf_fuzz_long = _hf


def test_hf_config_with_a_word_for_a_size_names_file_and_field(tmp_path):
    """The issue's case: ``"n_embd": "wide"`` gave ``invalid literal for int() with base 10: 'wide'``."""
    from tflm import cli

    d = write_tiny_hf_gpt2(str(tmp_path / "ckpt"), {"n_embd": "wide"})
    with pytest.raises(ModelFileError) as e:
        from tflm.models.hugging_face import load_hf_dir

        load_hf_dir(d)
    assert one_line(e.value) == f"{d}/config.json: field 'n_embd' must be an integer >= 1, got 'wide'"
    assert e.value.field == "n_embd"
    assert cli.main(["info", d]) == 2


def test_hf_config_lying_about_sizes_is_refused_before_building(tmp_path):
    d = write_tiny_hf_gpt2(str(tmp_path / "ckpt"), {"n_embd": 65536, "n_head": 1, "vocab_size": 50000})
    from tflm.models.hugging_face import load_hf_dir

    with pytest.raises(ModelFileError, match=r"wte.weight' has shape \(4, 8\), config.json \(vocab_size, n_embd\)"):
        with backbone_spy(os.path.getsize(os.path.join(d, "model.safetensors"))), guard(8 * 2**20):
            load_hf_dir(d)
    write_tiny_hf_gpt2(d, {"n_layer": 10**7})  # a list of its layers would take 400 MB: they are walked lazily
    with pytest.raises(ModelFileError, match="n_layer=10000000 but the weights have no tensor .h.1."):
        with backbone_spy(os.path.getsize(os.path.join(d, "model.safetensors"))), guard(8 * 2**20):
            load_hf_dir(d)


# --- feature-cache chunks -----------------------------------------------------------------------
def _npy_claiming(shape, body):
    """.npy bytes (format 1.0) whose header claims `shape` of float32, followed by `body`."""
    header = repr({"descr": "<f4", "fortran_order": False, "shape": tuple(shape)}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body


def _npz(members, raw=False):
    """An uncompressed npz, as np.savez writes it (`raw`: members given as .npy bytes or arrays)."""
    import io
    import zipfile

    buf = io.BytesIO()
    if not raw:
        np.savez(buf, **members)
        return buf.getvalue()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, value in members.items():
            if isinstance(value, np.ndarray):
                item = io.BytesIO()
                np.save(item, value)
                value = item.getvalue()
            zf.writestr(name + ".npy", value)
    return buf.getvalue()


_CACHE_KINDS = ["valid", "truncate", "flip", "dtype", "shape", "foreign", "rows", "lying_header", "junk", "no_meta"]


@st.composite
def cache_chunks(draw):
    kind = draw(st.sampled_from(_CACHE_KINDS))
    return kind, draw(st.integers(1, 9)), draw(st.integers(1, 6)), draw(st.floats(0, 1)), draw(st.integers(0, 255))


@fuzz_tests("cache", cache_chunks(), examples=[(k, 3, 4, 0.5, 7) for k in _CACHE_KINDS])
def _cache(example):
    kind, rows, cols, where, byte = example
    with tempfile.TemporaryDirectory() as root:
        cache = FeatureCache(root, "k" * 24)
        good = np.random.default_rng(rows).normal(size=(rows, cols)).astype(np.float32)
        cache.save(0, good)
        path = cache._path(0)
        data = open(path, "rb").read()
        import hashlib

        def meta(arr, key="k" * 24, n=rows):
            blob = json.dumps({"key": key, "index": 0, "rows": n,
                               "sha256": hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()}).encode()
            return np.frombuffer(blob, dtype=np.uint8)

        if kind == "truncate":
            data = data[: int(where * len(data))]
        elif kind == "flip":
            i = min(int(where * len(data)), len(data) - 1)
            data = data[:i] + bytes([byte]) + data[i + 1:]
        elif kind == "dtype":
            arr = good.astype(np.float64 if byte % 2 else np.int32)
            data = _npz({"array": arr, "meta": meta(arr)})
        elif kind == "shape":
            arr = good.reshape(-1) if byte % 2 else good[:, :, None]
            data = _npz({"array": arr, "meta": meta(arr)})
        elif kind == "foreign":
            data = _npz({"array": good, "meta": meta(good, key="f" * 24)})
        elif kind == "rows":
            arr = np.concatenate([good, good])
            data = _npz({"array": arr, "meta": meta(arr, n=2 * rows)})
        elif kind == "lying_header":  # the array's .npy header claims 10^7+ rows; the file has a few hundred bytes
            claim = (10**7 if byte % 2 else 10**12, cols)
            data = _npz({"array": _npy_claiming(claim, good.tobytes()), "meta": meta(good)}, raw=True)
        elif kind == "junk":
            data = bytes([byte]) * int(1 + where * 300)
        elif kind == "no_meta":
            data = _npz({"array": good})
        with open(path, "wb") as f:
            f.write(data)
        try:
            with guard(16 * len(data) + 2**20, seconds=20):
                arr = cache.load(0, rows, columns=cols)
        except CacheError as e:
            event(f"refused ({kind})")
            assert path in one_line(e)
            assert kind != "valid", str(e)
            assert cache.load(0, rows, repair=True, columns=cols) is None and not os.path.exists(path)
            return
        event(f"loaded ({kind})")
        np.testing.assert_array_equal(arr, good)  # only an intact chunk (or a harmless change) is used
        assert arr.dtype == np.float32


test_cache_fuzz, test_cache_fuzz_long = _cache


# --- the issue's OOM: a huge label through the CLI ----------------------------------------------
def test_huge_label_through_the_cli_is_refused_before_sizing_anything(tmp_path, capsys):
    """`tflm probe --model tiny-gpt2` on a train.tsv with the label 99999999999 grew to 24 GB (the
    inferred class count sized the label names). Now: an error naming the file and line, in
    little memory."""
    from tflm import cli

    task = tmp_path / "toy"
    task.mkdir()
    rows = "label\ttext\n0\ta good film\n99999999999\ta bad film\n1\tfine\n"
    (task / "train.tsv").write_text(rows)
    (task / "test.tsv").write_text(rows)
    with guard(256 * 2**20, seconds=120) as g:
        rc = cli.main(["probe", "--model", "tiny-gpt2", "--task", str(task), "--features", "f"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{task / 'train.tsv'}, line 3: label 99999999999 outside 0..{MAX_NUM_CLASSES - 1}" in err
    assert g["peak"] < 256 * 2**20
    (task / "task.json").write_text(json.dumps({"num_classes": 99999999999}))
    with guard(64 * 2**20, seconds=60):
        rc = cli.main(["probe", "--model", "tiny-gpt2", "--task", str(task), "--features", "f"])
    assert rc == 2 and "num_classes must be in 2..10000, got 99999999999" in capsys.readouterr().err
