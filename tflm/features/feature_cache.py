"""On-disk cache of sentence features f, keyed by everything that changes them."""

import hashlib
import json
import os
import math
import zipfile

import numpy as np

from tflm.atomic import atomic_path, write_atomic


class CacheError(ValueError):
    """A cache chunk that is unreadable, truncated, foreign, of the wrong shape or dtype, or corrupt.

    The message names the chunk file. A ValueError, so the CLI reports it as an error line.
    """


def cache_key(**parts):
    """sha256 of the JSON of all inputs that determine the features."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:24]


def texts_digest(texts):
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _atomic_save(path, array, meta):
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, array=array, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))


def _check_sizes(path):
    """Refuse a chunk whose arrays claim more bytes than the file holds, before `np.load` allocates them.

    Chunks are uncompressed `np.savez` archives: each member is a .npy array whose
    header gives its shape and dtype, and its bytes must fit in the member (and the
    member in the file).
    """
    size = os.path.getsize(path)
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
                raise ValueError(f"member {info.filename!r} is compressed or larger than the file")
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"member {info.filename!r}: .npy version {version} (tflm writes 1.0 / 2.0)")
            if math.prod(shape) * dtype.itemsize > info.file_size:
                raise ValueError(f"member {info.filename!r} claims shape {shape} of {dtype}, more than its "
                                 f"{info.file_size} bytes")


class FeatureCache:
    """Chunked, atomic, verified storage of f for one (model, data, options) key.

    Layout: ``root/<key>/chunk_00000.npz`` ...; each chunk carries its key,
    chunk index, row count and a sha256 of its values, checked on read. A
    chunk that fails the check raises `CacheError` naming the file (it is
    never silently used); `repair=True` deletes such chunks so they are
    recomputed. Finished chunks make an interrupted extraction resume.
    """

    def __init__(self, root, key, description=None):
        self.root = root
        self.key = key
        self.dir = os.path.join(root, key)
        os.makedirs(self.dir, exist_ok=True)
        if description is not None:
            info = os.path.join(self.dir, "key.json")
            if not os.path.exists(info):
                write_atomic(info, json.dumps(description, indent=1, default=str))

    def _path(self, index):
        return os.path.join(self.dir, f"chunk_{index:05d}.npz")

    def has(self, index):
        return os.path.exists(self._path(index))

    def load(self, index, rows, repair=False, columns=None):
        """Chunk `index` as a (rows, columns) float32 array (any columns when None), checked.

        A chunk that fails a check raises `CacheError` naming it, or with `repair`
        is deleted and None returned (so that it is recomputed).
        """
        path = self._path(index)
        try:
            _check_sizes(path)
            with np.load(path) as z:
                array = z["array"]
                meta = json.loads(bytes(z["meta"]).decode())
        except Exception as e:  # any unreadable file is corrupt
            return self._bad(path, f"unreadable ({type(e).__name__}: {e})", repair)
        if not isinstance(meta, dict):
            return self._bad(path, "has no metadata (not written by tflm)", repair)
        if meta.get("key") != self.key or meta.get("index") != index:
            return self._bad(path, "belongs to another cache key (stale)", repair)
        if array.dtype != np.float32 or array.ndim != 2:
            return self._bad(path, f"holds a {array.dtype} array of shape {array.shape}, expected 2-D float32",
                             repair)
        if array.shape[0] != rows or meta.get("rows") != rows:
            return self._bad(path, f"has {array.shape[0]} rows, expected {rows}", repair)
        if columns is not None and array.shape[1] != columns:
            return self._bad(path, f"has {array.shape[1]} columns, expected {columns}", repair)
        if hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() != meta.get("sha256"):
            return self._bad(path, "checksum mismatch (corrupt)", repair)
        return array

    def _bad(self, path, why, repair):
        if repair:
            os.remove(path)
            return None
        raise CacheError(
            f"feature cache file {path} {why}; delete it to recompute it "
            "(SentenceFeatures(repair_cache=True) deletes such chunks)")

    def save(self, index, array):
        array = np.ascontiguousarray(array)
        meta = {
            "key": self.key,
            "index": index,
            "rows": int(array.shape[0]),
            "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
        }
        _atomic_save(self._path(index), array, meta)
