"""Test helpers: where the project's shared folder is (with the shipped fallbacks), a small SST-2
task folder, and checks of written PNGs and Markdown reports.

The shared folder (``../shared`` next to the repository: ``data/`` with the task
splits and the IMDb corpus, ``gpt2_bpe/`` with OpenAI's BPE files) is optional: a
fresh clone has none. ``TFLM_SHARED_DATA`` overrides its data folder, and the
shared folder is then that folder's parent; CI points it at an empty folder once
so that every fallback below runs.

- `shared_or_shipped` gives the shared copy of a file when it is there, else the
  byte-identical copy shipped with tflm (`SHIPPED_SST2`, `SHIPPED_BPE`; their
  equality is tested whenever the shared copies exist).
- `requires_shared_data` skips, with a reason, a test that needs shared data
  no shipped copy can replace (the other tasks' full splits).

Tests that read the shared folder carry the `shared_data` marker (CI's empty-folder run selects them).
Test modules import these names with ``from conftest import ...``.
"""

import os
import re

import numpy as np
import pytest

from tflm.tasks.sources import PACKAGED_DATA_DIR
from tflm.tokenization.tokenizer import GPT2_ASSET_DIR

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.abspath(os.environ.get("TFLM_SHARED_DATA") or os.path.join(REPO, "..", "shared", "data"))
SHARED = os.path.dirname(SHARED_DATA)
SHARED_BPE = os.path.join(SHARED, "gpt2_bpe")

SHIPPED_SST2 = os.path.join(PACKAGED_DATA_DIR, "sst2")
SHIPPED_BPE = GPT2_ASSET_DIR


def shared_data(*parts):
    """A path under the shared data folder (which may not exist)."""
    return os.path.join(SHARED_DATA, *parts)


def shared_or_shipped(shared_path, shipped_path):
    """`shared_path` when it exists, else `shipped_path` (which must exist: it ships with tflm)."""
    if os.path.exists(shared_path):
        return shared_path
    if not os.path.exists(shipped_path):
        raise FileNotFoundError(f"neither {shared_path} nor the shipped copy {shipped_path} exists")
    return shipped_path


def requires_shared_data(*parts):
    """Decorator: mark a test `shared_data` and skip it unless every `parts` path (relative to the
    shared data folder) exists."""
    missing = [p for p in parts if not os.path.exists(shared_data(p))]
    skip = pytest.mark.skipif(
        bool(missing),
        reason=f"shared data {missing} not under {SHARED_DATA} (no shipped copy; set TFLM_SHARED_DATA)",
    )
    return lambda test: pytest.mark.shared_data(skip(test))


def write_sst2_subset(folder, per_label=(("train", 8), ("dev", 4), ("test", 4)), max_chars=90):
    """Write a small balanced task folder (train/dev/test.tsv) of real SST-2 training sentences.

    Takes, per label, the first sentences shorter than `max_chars` of the shipped
    train.tsv, in turn: split s gets `n` of each label, interleaved 0, 1, 0, 1, ...
    """
    with open(os.path.join(SHIPPED_SST2, "train.tsv"), encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t", 1) for line in f][1:]
    need = sum(n for _, n in per_label)
    by_label = {y: [t for lab, t in rows if lab == y and len(t) < max_chars][:need] for y in ("0", "1")}
    start = 0
    for split, n in per_label:
        lines = ["label\ttext"] + [f"{y}\t{by_label[y][i]}" for i in range(start, start + n) for y in ("0", "1")]
        start += n
        with open(os.path.join(folder, f"{split}.tsv"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    return folder


# --- checking written artefacts --------------------------------------------------------------
def read_png(path, size):
    """Decode the PNG at `path` (matplotlib) and check its (width, height); returns RGB floats in [0, 1]."""
    import matplotlib.image

    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG file"
    img = matplotlib.image.imread(path)
    assert (img.shape[1], img.shape[0]) == tuple(size), f"{path}: {img.shape[1]}x{img.shape[0]}, expected {size}"
    return img[..., :3]


def colour_pixels(img, colour, hue_tol=0.03, min_saturation=0.25):
    """How many pixels of `img` have the hue of `colour` ("C0", "#1f77b4", ...), at any lightness.

    Axes, ticks and text are grey, so this counts what was drawn in that colour
    (also where it is blended with white by an alpha).
    """
    import matplotlib.colors

    hsv = matplotlib.colors.rgb_to_hsv(np.clip(img, 0, 1))
    hue = matplotlib.colors.rgb_to_hsv(np.array(matplotlib.colors.to_rgb(colour)))[0]
    dh = np.abs(hsv[..., 0] - hue)
    return int(np.sum((np.minimum(dh, 1 - dh) < hue_tol) & (hsv[..., 1] > min_saturation)))


def markdown_sections(text):
    """{heading text: body} for every Markdown heading ("#" to "######") of `text`."""
    sections, heading, body = {}, None, []
    for line in text.splitlines():
        m = re.match(r"#{1,6} (.*)", line)
        if m:
            if heading is not None:
                sections[heading] = "\n".join(body)
            heading, body = m.group(1).strip(), []
        elif heading is not None:
            body.append(line)
    if heading is not None:
        sections[heading] = "\n".join(body)
    return sections


def markdown_tables(text):
    """Every pipe table of `text` as (header cells, list of row cells), the |---| line checked and dropped."""
    tables, block = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        if block:
            assert len(block) >= 2 and all(re.fullmatch(r":?-+:?", c) for c in block[1]), f"malformed table {block}"
            assert all(len(r) == len(block[0]) for r in block), f"ragged table {block}"
            tables.append((block[0], block[2:]))
            block = []
    return tables


def disk_full_on(monkeypatch, name, error=None, times=1):
    """Make flushing a file whose path contains `name` fail (`os.fsync` raises `error`, ENOSPC by default).

    tflm flushes every file it writes (`tflm.atomic`), after the data went to
    its temporary file, as a full disk or a failing device reports it. The
    first `times` matching flushes fail; returns the list of paths that failed.
    """
    import errno as errno_codes

    error = errno_codes.ENOSPC if error is None else error
    real, failed = os.fsync, []

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if name in path and len(failed) < times:
            failed.append(path)
            raise OSError(error, os.strerror(error))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return failed


def partial_files(folder):
    """Temporary or partial files tflm left under `folder` (names with '.tmp')."""
    return sorted(os.path.join(d, f) for d, dirs, files in os.walk(folder) for f in files + dirs if ".tmp" in f)
