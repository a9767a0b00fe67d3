"""Loading task data: tsv / csv files, TensorFlow Datasets (splits and protocols: `tflm.tasks.splits`).

Every loader returns ``(texts, labels)``: a list of str and an int64 numpy
array of labels in ``0..k-1``. Bad input raises `DataError` naming the file
and the 1-based line number.
"""

import csv
import io
import os

import numpy as np

from tflm import network
from tflm.tasks.detokenize import ptb_detokenize
from tflm.tasks.errors import DataError
from tflm.tasks.registry import get_task
from tflm.tasks.task import MAX_NUM_CLASSES

PACKAGED_DATA_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data"
)
DATA_DIR_ENV = "TFLM_DATA_DIR"
SPLITS = ("train", "dev", "test", "all")
_SPLIT_ALIASES = {"validation": "dev", "valid": "dev", "val": "dev"}


# --- files ------------------------------------------------------------------
def _read_text(path):
    """Whole file as str; DataError for a missing file or invalid UTF-8."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except IsADirectoryError:
        raise DataError("is a directory, not a file", path=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"invalid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})", path=path, line=line
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


def _parse_label(field, path, line, num_classes, label_map=None):
    if label_map is not None:
        if field not in label_map:
            raise DataError(f"label {field!r} not in label_map {sorted(label_map)}", path, line)
        y = label_map[field]
    else:
        s = field.strip()
        digits = s[1:] if s[:1] == "-" else s
        if not (digits.isascii() and digits.isdigit()):
            raise DataError(f"label {field[:40]!r} is not an integer", path, line)
        y = int(s) if len(digits) <= 18 else MAX_NUM_CLASSES  # no int() of a 10^6-digit label
    # Checked before anything is sized by the labels (class counts, bincounts, one-hots).
    k = MAX_NUM_CLASSES if num_classes is None else num_classes
    if y < 0 or y >= k:
        shown = s if label_map is None and len(s) <= 40 else y
        bound = f"0..{k - 1}" + ("" if num_classes is not None else
                                 f" (tflm's bound on the number of classes, {MAX_NUM_CLASSES})")
        raise DataError(f"label {shown} outside {bound}", path, line)
    return y


def load_tsv(path, num_classes=None):
    """Read a ``label<TAB>text`` file (optional ``label<TAB>text`` header).

    Each line is split on its FIRST tab. Trailing blank lines are ignored.

    Args:
        path: the file.
        num_classes: k; labels must lie in 0..k-1. None: any label in
            0..MAX_NUM_CLASSES-1 (`tflm.tasks.task.MAX_NUM_CLASSES`).

    Returns:
        (texts, labels): list of str, int64 numpy array.

    Raises:
        DataError naming the file and 1-based line for: a missing file,
        invalid UTF-8, a carriage return inside a line, a line without a tab, a non-integer label, a label
        outside 0..k-1, an empty text, or a file without examples.
    """
    path = os.fspath(path)
    lines = _read_text(path).split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    start = 0
    if lines and lines[0].split("\t", 1)[0].strip().lower() == "label":
        start = 1
    texts, labels = [], []
    for i in range(start, len(lines)):
        line = lines[i]
        if line.endswith("\r"):
            line = line[:-1]
        if "\r" in line:  # text after it would silently join this line
            raise DataError("carriage return (\\r) inside the line: old Mac (CR) line endings? "
                            "Save the file with \\n or \\r\\n line endings", path, i + 1)
        tab = line.find("\t")
        if tab < 0:
            what = "empty line" if not line.strip() else f"no tab in line {line[:40]!r}"
            raise DataError(f"{what}; expected 'label<TAB>text'", path, i + 1)
        y = _parse_label(line[:tab], path, i + 1, num_classes)
        text = line[tab + 1 :]
        if not text.strip():
            raise DataError("empty text", path, i + 1)
        texts.append(text)
        labels.append(y)
    if not texts:
        raise DataError("no examples", path)
    return texts, np.asarray(labels, dtype=np.int64)


def load_csv(
    path,
    text_column,
    label_column,
    num_classes,
    delimiter=",",
    header=True,
    label_map=None,
):
    """Read a CSV (or any delimited) file with the `csv` module.

    Args:
        path: the file (UTF-8).
        text_column: column name (needs `header`) or 0-based index, or a
            list of them joined with a space (e.g. AG News title + description).
        label_column: column name or index.
        num_classes: k; labels must lie in 0..k-1 (None: 0..MAX_NUM_CLASSES-1).
        delimiter: field separator.
        header: whether the first row holds column names.
        label_map: optional dict raw label string -> int (e.g. ``{"1": 0,
            "2": 1}`` for 1-based labels, ``{"neg": 0, "pos": 1}``).

    Returns:
        (texts, labels) as `load_tsv`.
    """
    path = os.fspath(path)
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    text_cols = list(text_column) if isinstance(text_column, (list, tuple)) else [text_column]
    names = None
    if header:
        try:
            names = next(reader)
        except StopIteration:
            raise DataError("empty file", path) from None
        except csv.Error as e:
            raise DataError(f"malformed CSV ({e})", path, reader.line_num) from None

    def index_of(col):
        if isinstance(col, (int, np.integer)) and not isinstance(col, bool):
            return int(col)
        if names is None:
            raise ValueError(f"column {col!r} given by name but header=False")
        if col not in names:
            raise DataError(f"no column {col!r} in header {names}", path, 1)
        return names.index(col)

    text_idx = [index_of(c) for c in text_cols]
    label_idx = index_of(label_column)
    need = max(text_idx + [label_idx]) + 1
    texts, labels = [], []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(f"malformed CSV ({e})", path, reader.line_num + 1) from None
        line = reader.line_num
        if not row:
            raise DataError("empty line", path, line)
        if len(row) < need:
            raise DataError(
                f"{len(row)} field(s), need at least {need} (delimiter {delimiter!r})", path, line
            )
        y = _parse_label(row[label_idx], path, line, num_classes, label_map)
        t = " ".join(row[j].strip() for j in text_idx).strip()
        if not t:
            raise DataError("empty text", path, line)
        texts.append(t)
        labels.append(y)
    if not texts:
        raise DataError("no examples", path)
    return texts, np.asarray(labels, dtype=np.int64)


# --- tasks ----------------------------------------------------------------------
def _canonical_split(split):
    s = str(split).strip().lower()
    s = _SPLIT_ALIASES.get(s, s)
    if s not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return s


def split_path(task, split, data_dir=None):
    """The tsv file `load_split` reads (DataError listing where it looked)."""
    task = get_task(task)
    split = _canonical_split(split)
    filename = f"{split}.tsv"
    roots = []
    if data_dir is not None:
        roots += [os.path.join(os.fspath(data_dir), task.name), os.fspath(data_dir)]
    elif task.data_dir is not None:
        roots.append(task.data_dir)
    else:
        env = os.environ.get(DATA_DIR_ENV)
        if env:
            roots += [os.path.join(env, task.name), env]
        roots.append(os.path.join(PACKAGED_DATA_DIR, task.name))
    for root in roots:
        candidate = os.path.join(root, filename)
        if os.path.isfile(candidate):
            return candidate
    looked = ", ".join(os.path.join(r, filename) for r in roots)
    hint = ""
    if data_dir is None and task.data_dir is None:
        hint = f" Pass data_dir=... (a folder with {task.name}/{filename}) or set ${DATA_DIR_ENV}."
    if task.tfds_name and split in task.tfds_splits:
        hint += f" With a network, tflm.tasks.load_tfds({task.name!r}, {split!r}) also works."
    if split == "all" and not task.is_random_split:
        hint += f" Task {task.name!r} has fixed train/dev/test splits."
    raise DataError(f"no {split} split for task {task.name!r}: missing file (looked at {looked}).{hint}")


def load_split(task, split, data_dir=None, detokenize=False):
    """Texts and labels of one split of a task.

    Args:
        task: a task name (see `list_tasks`) or a `Task`.
        split: "train", "dev" (alias "validation"), "test", or "all"
            (the whole data set, for cr / mpqa).
        data_dir: a folder holding ``<task>/<split>.tsv`` or ``<split>.tsv``
            itself. None: the task's own folder (`task_from_folder`), else
            ``$TFLM_DATA_DIR``, else the data shipped in tflm (sst2 only).
        detokenize: False (default, text as distributed, as in the paper),
            True for `ptb_detokenize`, or any str -> str callable.

    Returns:
        (texts, labels): list of str, int64 numpy array.
    """
    task = get_task(task)
    path = split_path(task, split, data_dir)
    texts, labels = load_tsv(path, task.num_classes)
    if detokenize:
        fn = detokenize if callable(detokenize) else ptb_detokenize
        texts = [fn(t) for t in texts]
    return texts, labels


# --- TensorFlow Datasets ----------------------------------------------------------
_PROBE_HOSTS = (("storage.googleapis.com", 443),)


def _network_reachable(timeout):
    """(ok, why): can we open a TCP connection to the TFDS host within `timeout` s?"""
    return network.probe(_PROBE_HOSTS, timeout)


def load_tfds(task, split, data_dir=None, download=True, timeout=5.0):
    """Texts and labels of a task from TensorFlow Datasets.

    Uses an already prepared copy in `data_dir` (TFDS's default folder when
    None) if there is one; otherwise downloads it when `download`. Without a
    network this fails within about `timeout` seconds with a `DataError`
    instead of hanging in retries (set ``TFLM_OFFLINE=1`` to fail at once).
    A proxy (``HTTPS_PROXY``) skips the direct-connection probe.

    Not every task has a builder (dbpedia, yahoo, sst2, sst5, cr, mpqa: no);
    `Task.tfds_splits` lists the splits (e.g. no labelled GLUE test split).
    """
    task = get_task(task)
    split = _canonical_split(split)
    if not task.tfds_name:
        raise DataError(
            f"task {task.name!r} has no TensorFlow Datasets builder"
            + (f" (Hugging Face name: {task.hf_name!r})" if task.hf_name else "")
            + f"; put {{train,dev,test}}.tsv in <data_dir>/{task.name}/ and use load_split"
        )
    if split not in task.tfds_splits:
        raise DataError(
            f"task {task.name!r}: TFDS builder {task.tfds_name!r} has no labelled {split!r} split; "
            f"available: {', '.join(task.tfds_splits)}"
        )
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(f"tensorflow_datasets is not installed ({e})") from None
    try:
        builder = tfds.builder(task.tfds_name, data_dir=data_dir)
        prepared = builder.is_prepared()
    except Exception as e:  # tfds raises many types
        raise DataError(f"TFDS builder {task.tfds_name!r} failed: {type(e).__name__}: {e}") from None
    if not prepared:
        where = getattr(builder, "data_dir", data_dir)
        if not download:
            raise DataError(f"TFDS dataset {task.tfds_name!r} is not prepared in {where} and download=False")
        if os.environ.get("TFLM_OFFLINE", "") not in ("", "0"):
            raise DataError(f"TFDS dataset {task.tfds_name!r} is not prepared in {where} and TFLM_OFFLINE is set")
        proxied = any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"))
        if not proxied:
            ok, why = _network_reachable(timeout)
            if not ok:
                raise DataError(
                    f"cannot download TFDS dataset {task.tfds_name!r}: no network ({why}). "
                    f"Prepare it elsewhere and pass its folder as data_dir, or use tsv files with load_split"
                )
        try:
            builder.download_and_prepare()
        except Exception as e:
            raise DataError(
                f"downloading/preparing TFDS dataset {task.tfds_name!r} failed: {type(e).__name__}: {e}"
            ) from None
    ds = builder.as_dataset(split=task.tfds_splits[split])
    label_map = task.tfds_label_map
    texts, labels = [], []
    for ex in tfds.as_numpy(ds):
        parts = [ex[k].decode("utf-8").strip() for k in task.tfds_text_keys]
        y = int(ex[task.tfds_label_key])
        if y < 0:
            raise DataError(f"TFDS {task.tfds_name!r} split {split!r} is unlabelled (label {y})")
        texts.append(" ".join(p for p in parts if p))
        labels.append(label_map[y] if label_map is not None else y)
    return texts, np.asarray(labels, dtype=np.int64)


# --- utilities ---------------------------------------------------------------------
def as_tf_dataset(texts, labels, batch_size=None, shuffle=False, seed=0):
    """A `tf.data.Dataset` of (text, label) pairs (string, int64)."""
    import tensorflow as tf

    labels = np.asarray(labels, dtype=np.int64)
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(list(texts), dtype=tf.string), labels))
    if shuffle:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=False)
    if batch_size:
        ds = ds.batch(batch_size)
    return ds
