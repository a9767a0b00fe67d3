"""Keras callbacks of a fine-tuning run; all of them survive a restart exactly.

`EpochLog`, `BestCheckpoint` and `PatienceStop` are Keras' `CSVLogger`,
`ModelCheckpoint(save_best_only=True)` and `EarlyStopping`, extended only to
resume: each takes the number of epochs the backup holds (`start_epoch`)
or their logs. Order matters: they act at the end of an epoch *before*
`BackupAndRestore` backs it up, so a process killed in between re-runs that
epoch, and the re-run overwrites what the first attempt wrote.
"""

import csv
import os

import keras
import numpy as np

from tflm._compat import seed_generators
from tflm.callbacks import read_json
from tflm.atomic import WriteError, commit, write_atomic
from tflm.report import write_json


class SetEpoch(keras.callbacks.Callback):
    """Tells the training input pipeline (an `EpochCounter`) which epoch starts."""

    def __init__(self, counter):
        super().__init__()
        self.counter = counter

    def on_epoch_begin(self, epoch, logs=None):
        self.counter.epoch = int(epoch)


class EpochSeeds(keras.callbacks.Callback):
    """Resets every dropout `SeedGenerator` to a function of (its seed, epoch).

    Dropout masks then depend only on (seed, epoch, step), so a run resumed
    at epoch e draws the masks an uninterrupted run draws (the generators'
    counters are not part of a `BackupAndRestore` backup).
    """

    STEP_SPACE = 1 << 24

    def on_train_begin(self, logs=None):
        self._generators = seed_generators(self.model)
        self._seeds = [int(np.asarray(g.state.numpy() if hasattr(g.state, "numpy") else g.state)[0])
                       for g in self._generators]

    def on_epoch_begin(self, epoch, logs=None):
        for g, seed in zip(self._generators, self._seeds):
            state = np.array([seed, epoch * self.STEP_SPACE], dtype=g.state.dtype)
            g.state.assign(state)


class EpochLog(keras.callbacks.CSVLogger):
    """Keras' `CSVLogger` (appending) that keeps a resumed run's history exact.

    A fit resumed after `start_epoch` completed (backed-up) epochs first
    drops the rows of epochs >= `start_epoch`: rows an attempt killed before
    its backup wrote (possibly a partial last line), which the resumed fit
    writes again.
    """

    def __init__(self, path, start_epoch=0):
        super().__init__(path, append=True)
        self.start_epoch = int(start_epoch)

    def on_train_begin(self, logs=None):
        lines = _complete_lines(self.filename)
        if lines:
            kept = lines[:1] + [line for line in lines[1:] if int(line.split(self.sep, 1)[0]) < self.start_epoch]
            write_atomic(self.filename, "".join(kept))
        super().on_train_begin(logs)


def _complete_lines(path):
    """The newline-terminated lines of a text file ([] when there is none): a partial last line is left out."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8", newline="") as f:
        lines = f.read().splitlines(keepends=True)
    return lines if not lines or lines[-1].endswith("\n") else lines[:-1]


def read_history(path):
    """The rows of an `EpochLog` CSV file as dicts of floats ("epoch" an int); [] when there is none.

    A partial last line (a process killed while writing it) is left out.
    """
    return [
        {"epoch": int(row["epoch"]), **{k: float(v) for k, v in row.items() if k != "epoch" and v != "NA"}}
        for row in csv.DictReader(_complete_lines(path))
    ]


class BestCheckpoint(keras.callbacks.ModelCheckpoint):
    """Keras' `ModelCheckpoint(save_best_only=True)` for `monitor` (max), atomic and resumable.

    Writes ``<dir>/best.weights.h5`` (`save_weights`: model weights only, no
    optimizer) and ``<dir>/best.json`` ({"epoch", monitor}). Ties keep the
    earlier epoch. Keras writes to ``best.tmp.weights.h5``, which replaces the
    weights file once complete. A fit resumed after `start_epoch` completed
    epochs starts from the best value recorded before it; a record of epoch
    >= `start_epoch` (written by an attempt killed before its backup) is
    ignored: that epoch is re-run from the same state and beats the earlier
    best again, as it did the first time.
    """

    WEIGHTS = "best.weights.h5"
    INFO = "best.json"

    def __init__(self, directory, monitor="val_accuracy", start_epoch=0):
        self.directory = directory
        self.weights_path = os.path.join(directory, self.WEIGHTS)
        self.info_path = os.path.join(directory, self.INFO)
        info = read_json(self.info_path)
        best = info[monitor] if info is not None and info["epoch"] < int(start_epoch) else None
        super().__init__(
            os.path.join(directory, "best.tmp.weights.h5"), monitor=monitor, mode="max",
            save_best_only=True, save_weights_only=True, initial_value_threshold=best,
        )

    def on_epoch_end(self, epoch, logs=None):
        if (logs or {}).get(self.monitor) is None:
            raise KeyError(f"BestCheckpoint: no {self.monitor!r} in logs {sorted(logs or {})}")
        before = self.best
        try:
            super().on_epoch_end(epoch, logs)
        except OSError as e:  # Keras wrote (part of) best.tmp.weights.h5: remove it
            if os.path.exists(self.filepath):
                os.remove(self.filepath)
            raise WriteError(self.filepath, e) from e
        if self.best is not None and self.best != before:  # improved: Keras saved the weights
            commit(self.filepath, self.weights_path)
            write_json(self.info_path, {"epoch": int(epoch), self.monitor: float(self.best)})


class PatienceStop(keras.callbacks.EarlyStopping):
    """Keras' `EarlyStopping` on `monitor` (max) that also counts the epochs before a restart.

    Stops when `patience` epochs passed without improving on the best value
    (ties do not improve). `history` holds the logs of the epochs completed
    before this fit (`read_history`); they are replayed through Keras' own
    rule at train begin, so a resumed run stops where an uninterrupted one does.
    """

    def __init__(self, patience, monitor="val_accuracy", history=()):
        super().__init__(monitor=monitor, mode="max", patience=int(patience))
        self.history = list(history)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        for entry in self.history:
            super().on_epoch_end(entry["epoch"], entry)

    @classmethod
    def should_stop(cls, entries, patience, monitor="val_accuracy"):
        """Whether Keras' rule stops after the epochs `entries` (dicts with `monitor`)."""
        if patience is None or not entries:
            return False
        stop = cls(patience, monitor, [dict(e, epoch=i) for i, e in enumerate(entries)])
        stop.set_model(_StopFlag())
        stop.on_train_begin()
        return bool(stop.model.stop_training)


class _StopFlag:
    stop_training = False
