"""Reading task files: ``label<TAB>text`` tsv and delimited csv files (bad input: `DataError`).

Every loader returns ``(texts, labels)``: a list of str and an int64 numpy
array of labels in ``0..k-1``. Bad input raises `DataError` naming the file
and the 1-based line number. Below the task registry (which reads tsv files
to infer a folder task's class count); a task's split files and TensorFlow
Datasets: `tflm.tasks.sources`.
"""

import csv
import io
import os

import numpy as np

from tflm.tasks.errors import DataError
from tflm.tasks.task import MAX_NUM_CLASSES


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
