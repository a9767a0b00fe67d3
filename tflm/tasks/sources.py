"""A task's data: its tsv split files (data_dir, $TFLM_DATA_DIR, shipped) and TensorFlow Datasets.

`load_split` / `load_tfds` return ``(texts, labels)`` as the file loaders of
`tflm.tasks.loaders` do; split protocols and subsamples: `tflm.tasks.splits`.
"""

import os

import numpy as np

from tflm import network
from tflm.tasks.detokenize import ptb_detokenize
from tflm.tasks.errors import DataError
from tflm.tasks.loaders import load_tsv
from tflm.tasks.registry import get_task


PACKAGED_DATA_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data"
)
DATA_DIR_ENV = "TFLM_DATA_DIR"
SPLITS = ("train", "dev", "test", "all")
_SPLIT_ALIASES = {"validation": "dev", "valid": "dev", "val": "dev"}


# --- split files -----------------------------------------------------------------
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
