"""Atomic writes: every file or folder tflm writes appears whole or not at all.

`atomic_path(path)` yields a temporary path next to `path` (same folder, so
the final `os.replace` is an atomic rename on one file system); the caller
writes there, and only when the block succeeds is the result flushed and
renamed onto `path`. When the block fails (a full disk: ENOSPC, an I/O error:
EIO, a file size limit: EFBIG, or any other exception) the temporary file or
folder is removed, `path` keeps what it held before, and an `OSError` becomes
a `WriteError` naming `path`. A rerun after space is freed then finds only
complete files and resumes from them.

Concurrent writers of the same `path` (two processes filling one feature
cache) each rename their own complete temporary file; the last rename wins,
and a reader only ever opens a complete file.
"""

import contextlib
import os
import shutil
import tempfile


class WriteError(OSError):
    """A file or folder tflm could not write (disk full, I/O error, ...); nothing partial was left.

    The message names the path and the system error. Attributes: `path`, and
    `errno` / `strerror` of the underlying `OSError`.
    """

    def __init__(self, path, cause):
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.path = path

    def __str__(self):
        return (f"could not write {self.path}: {self.strerror} (errno {self.errno}); nothing partial was kept "
                "there, so after freeing space a rerun resumes from what was completely written")


def _remove(tmp):
    if os.path.isdir(tmp) and not os.path.islink(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
    elif os.path.lexists(tmp):
        os.remove(tmp)


def _umask_mode(is_dir):
    """The mode `open` / `os.makedirs` would give a new file / folder under the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if is_dir else 0o666) & ~mask


def _fsync(path):
    """Flush a written file (or every file of a written folder) to disk; errors surface here, not later."""
    paths = [path] if not os.path.isdir(path) else [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path, suffix="", directory=False):
    """Yield a temporary path beside `path`; rename it onto `path` when the block succeeds.

    Args:
        path: the final file or folder.
        suffix: the end of the temporary name (some writers need one, e.g.
            Keras' ``.weights.h5`` or NumPy's ``.npz``).
        directory: yield an empty temporary folder, which replaces the
            folder `path` whole (an existing one is moved aside, then removed).

    Raises:
        WriteError: the block (or the flush) failed with an `OSError`; the
            temporary file or folder is gone and `path` is untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    prefix = "." + os.path.basename(path) + ".tmp-"
    try:
        os.makedirs(folder, exist_ok=True)
        if directory:
            tmp = tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=folder)
        else:
            fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
            os.close(fd)
    except OSError as e:
        raise WriteError(path, e) from e
    try:
        yield tmp
    except OSError as e:  # also a WriteError of a file written inside a temporary folder: name `path`
        _remove(tmp)
        raise WriteError(path, e) from e
    except BaseException:
        _remove(tmp)
        raise
    commit(tmp, path)


def commit(tmp, path):
    """Flush the written file or folder `tmp` and rename it onto `path` (a folder `path` is replaced whole).

    On failure `tmp` is removed, `path` is untouched and `WriteError` names `path`.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        _fsync(tmp)
        os.chmod(tmp, _umask_mode(os.path.isdir(tmp)))  # mkstemp / mkdtemp make 0600 / 0700
        if os.path.isdir(tmp) and os.path.isdir(path):
            old = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".old-", dir=folder)
            os.replace(path, os.path.join(old, "x"))
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise WriteError(path, e) from e


def write_atomic(path, data):
    """Write `data` (str as UTF-8, or bytes) to the file `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)


def copy_atomic(src, dst):
    """Copy the file (or folder) `src` to `dst` atomically."""
    if os.path.isdir(src):
        with atomic_path(dst, directory=True) as tmp:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
    else:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)


def save_figure(fig, path, dpi=120):
    """Save the matplotlib figure `fig` as the PNG file `path` atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def append_line(path, line):
    """Append `line` and a newline to the log file `path`: all of it or, when the write fails, none of it.

    A failed append truncates the file back to its length before (and raises `WriteError`).
    """
    data = line.encode("utf-8") + b"\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as e:
        raise WriteError(path, e) from e
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            os.ftruncate(fd, start)
            raise
    except OSError as e:
        raise WriteError(path, e) from e
    finally:
        os.close(fd)
