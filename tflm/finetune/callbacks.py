"""Keras callbacks of a fine-tuning run; all of them survive a restart exactly.

Order matters: `EpochLog` and `BestCheckpoint` write at the end of an epoch
*before* `BackupAndRestore` backs it up, so a process killed in between
re-runs that epoch, and the re-run overwrites what the first attempt wrote.
"""

import json
import os

import keras
import numpy as np


def write_json_atomic(path, obj):
    """Write JSON to `path` via a temporary file and `os.replace` (never half-written)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path, default=None):
    if not os.path.isfile(path):
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)


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
        write_json_atomic(self.path, entries)

    def on_epoch_end(self, epoch, logs=None):
        entries = [e for e in self.load() if e["epoch"] < epoch]
        entries.append({"epoch": int(epoch), **_floats(logs), **self.extra()})
        write_json_atomic(self.path, entries)


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
            write_json_atomic(self.info_path, {"epoch": int(epoch), self.monitor: float(value)})


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


class RunTimer(keras.callbacks.Callback):
    """Adds `examples/s` (training examples per second) to the logs and progress bar."""

    def __init__(self, examples_per_step):
        super().__init__()
        self.examples_per_step = examples_per_step

    def on_epoch_begin(self, epoch, logs=None):
        import time

        self._t0, self._steps = time.time(), 0

    def on_train_batch_end(self, batch, logs=None):
        import time

        self._steps += 1
        if logs is not None:
            logs["ex/s"] = self._steps * self.examples_per_step / max(time.time() - self._t0, 1e-9)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` (epoch granularity) whose backup is one atomic commit.

    Keras writes ``latest.weights.h5`` and then ``training_metadata.json``;
    a process killed between the two resumes from a later epoch's weights
    with an earlier epoch number. Here each backup is written to
    ``epoch_<n>.weights.h5`` (weights + optimizer state) and then committed
    by atomically replacing ``backup.json`` ({"epoch": n, "weights": ...});
    older weight files are removed after the commit.
    """

    STATE = "backup.json"

    def __init__(self, backup_dir):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)

    @classmethod
    def completed_epochs(cls, backup_dir):
        """Epochs a backup in `backup_dir` holds (0 when there is none)."""
        state = read_json(os.path.join(backup_dir, cls.STATE))
        return 0 if state is None else int(state["epoch"])

    def _load_model(self):
        state = read_json(os.path.join(self.backup_dir, self.STATE))
        if state is None:
            return
        if not self.model.built:
            raise ValueError("AtomicBackupAndRestore: build the model before fit()")
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.backup_dir, state["weights"]))
        self.model._initial_epoch = int(state["epoch"])

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch_{self._current_epoch}.weights.h5"
        self.model.save_weights(os.path.join(self.backup_dir, name), overwrite=True)
        write_json_atomic(os.path.join(self.backup_dir, self.STATE), {"epoch": self._current_epoch, "weights": name})
        for f in os.listdir(self.backup_dir):
            if f.startswith("epoch_") and f.endswith(".weights.h5") and f != name:
                os.remove(os.path.join(self.backup_dir, f))
