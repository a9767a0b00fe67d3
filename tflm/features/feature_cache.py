"""On-disk cache of sentence features f, keyed by everything that changes them."""

import hashlib
import json
import os
import tempfile

import numpy as np


class CacheError(RuntimeError):
    pass


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
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp.npz")
    os.close(fd)
    try:
        with open(tmp, "wb") as f:
            np.savez(f, array=array, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
                fd, tmp = tempfile.mkstemp(dir=self.dir)
                with os.fdopen(fd, "w") as f:
                    json.dump(description, f, indent=1, default=str)
                os.replace(tmp, info)

    def _path(self, index):
        return os.path.join(self.dir, f"chunk_{index:05d}.npz")

    def has(self, index):
        return os.path.exists(self._path(index))

    def load(self, index, rows, repair=False):
        path = self._path(index)
        try:
            with np.load(path) as z:
                array = z["array"]
                meta = json.loads(bytes(z["meta"]).decode())
        except Exception as e:  # any unreadable file is corrupt
            return self._bad(path, f"unreadable ({type(e).__name__}: {e})", repair)
        if meta.get("key") != self.key or meta.get("index") != index:
            return self._bad(path, "belongs to another cache key (stale)", repair)
        if array.shape[0] != rows or meta.get("rows") != rows:
            return self._bad(path, f"has {array.shape[0]} rows, expected {rows}", repair)
        if hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() != meta.get("sha256"):
            return self._bad(path, "checksum mismatch (corrupt)", repair)
        return array

    def _bad(self, path, why, repair):
        if repair:
            os.remove(path)
            return None
        raise CacheError(f"feature cache file {path} {why}; delete it or pass --repair-cache to recompute")

    def save(self, index, array):
        array = np.ascontiguousarray(array)
        meta = {
            "key": self.key,
            "index": index,
            "rows": int(array.shape[0]),
            "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
        }
        _atomic_save(self._path(index), array, meta)
