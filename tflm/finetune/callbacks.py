"""Keras callbacks of a fine-tuning run; all of them survive a restart exactly.

Order matters: `EpochLog` and `BestCheckpoint` write at the end of an epoch
*before* `BackupAndRestore` backs it up, so a process killed in between
re-runs that epoch, and the re-run overwrites what the first attempt wrote.
"""

import os

import keras
import numpy as np

from tflm.callbacks import read_json
from tflm.report import write_json


def _floats(logs):
    return {k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0}


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
        self._generators = []
        for layer in self.model._flatten_layers(include_self=True, recursive=True):
            self._generators.extend(getattr(layer, "_seed_generators", []))
        self._seeds = [int(np.asarray(g.state.numpy() if hasattr(g.state, "numpy") else g.state)[0])
                       for g in self._generators]

    def on_epoch_begin(self, epoch, logs=None):
        for g, seed in zip(self._generators, self._seeds):
            state = np.array([seed, epoch * self.STEP_SPACE], dtype=g.state.dtype)
            g.state.assign(state)


class EpochLog(keras.callbacks.Callback):
    """Keeps the run's full per-epoch history in `path` (JSON), across restarts.

    A restarted fit starts at epoch e; entries from epoch e on (written by an
    attempt killed before its backup) are dropped first.
    """

    def __init__(self, path, extra=None):
        super().__init__()
        self.path = path
        self.extra = extra or (lambda: {})

    def load(self):
        return read_json(self.path, default=[])

    def on_epoch_begin(self, epoch, logs=None):
        entries = [e for e in self.load() if e["epoch"] < epoch]
        write_json(self.path, entries)

    def on_epoch_end(self, epoch, logs=None):
        entries = [e for e in self.load() if e["epoch"] < epoch]
        entries.append({"epoch": int(epoch), **_floats(logs), **self.extra()})
        write_json(self.path, entries)


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the weights of the epoch with the best `monitor` (max), across restarts.

    Writes ``<dir>/best.weights.npz`` (model weights only, no optimizer) and
    ``<dir>/best.json`` ({"epoch", monitor}). Ties keep the earlier epoch.
    The best value so far is read back from `best.json`, so a resumed run
    keeps comparing against the epochs before the interruption.
    """

    def __init__(self, directory, monitor="val_accuracy"):
        super().__init__()
        self.directory = directory
        self.monitor = monitor
        self.weights_path = os.path.join(directory, "best.weights.npz")
        self.info_path = os.path.join(directory, "best.json")

    def on_epoch_begin(self, epoch, logs=None):
        info = read_json(self.info_path)
        if info is not None and info["epoch"] >= epoch:
            # Written by an attempt killed after this callback but before the
            # backup of that epoch: the epoch is re-run from the same state and
            # beats the earlier best again (it did the first time), so
            # forgetting the record reproduces the uninterrupted decision.
            os.remove(self.info_path)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise KeyError(f"BestCheckpoint: no {self.monitor!r} in logs {sorted(logs or {})}")
        info = read_json(self.info_path)
        if info is None or float(value) > info[self.monitor]:
            weights = [np.asarray(keras.ops.convert_to_numpy(w)) for w in self.model.weights]
            tmp = self.weights_path + ".tmp.npz"
            np.savez(tmp, *weights)
            os.replace(tmp, self.weights_path)
            write_json(self.info_path, {"epoch": int(epoch), self.monitor: float(value)})


def load_weights_npz(model, path):
    with np.load(path) as z:
        model.set_weights([z[f"arr_{i}"] for i in range(len(z.files))])


class PatienceStop(keras.callbacks.Callback):
    """Early stopping on the best `monitor` so far, computed from the full history file.

    Stops when `patience` epochs passed without improving on the best
    value (ties do not improve). Reading the persisted history (not a
    counter in memory) makes a resumed run stop where an uninterrupted one does.
    """

    def __init__(self, history_path, patience, monitor="val_accuracy"):
        super().__init__()
        self.history_path = history_path
        self.patience = int(patience)
        self.monitor = monitor

    @staticmethod
    def should_stop(entries, patience, monitor="val_accuracy"):
        if patience is None or not entries:
            return False
        values = [e[monitor] for e in entries]
        best = int(np.argmax(values))  # first maximum
        return len(values) - 1 - best >= patience

    def on_epoch_end(self, epoch, logs=None):
        entries = read_json(self.history_path, default=[])
        if self.should_stop(entries, self.patience, self.monitor):
            self.model.stop_training = True


