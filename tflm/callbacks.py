"""Keras callbacks shared by LM pretraining and fine-tuning."""

import json
import os
import time

import keras

from tflm._compat import BackupAndRestoreHooks
from tflm.atomic import atomic_path
from tflm.report import write_json


def read_json(path, default=None):
    if not os.path.isfile(path):
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class Throughput(keras.callbacks.Callback):
    """Adds a rate (e.g. `tok/s` or `ex/s`) to the batch logs, so the progress bar shows it.

    `units_per_step`: a number (the same every step), or a function of the epoch giving each
    step's units (e.g. the real tokens of every batch of that epoch's plan).
    """

    def __init__(self, units_per_step, name="tok/s"):
        super().__init__()
        self.units_per_step = units_per_step
        self.name = name

    def on_epoch_begin(self, epoch, logs=None):
        self._t0, self._steps, self._units = time.time(), 0, 0.0
        per = self.units_per_step
        self._per_step = None if not callable(per) else [float(u) for u in per(epoch)]

    def on_train_batch_end(self, batch, logs=None):
        self._units += self.units_per_step if self._per_step is None else self._per_step[self._steps]
        self._steps += 1
        if logs is not None:
            logs[self.name] = self._units / max(time.time() - self._t0, 1e-9)


def peak_rss_gb():
    """This process's peak resident memory so far, in GB (Linux ru_maxrss is in KB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)


BACKUP_DIR = "backup"  # where a run keeps its backup (removed by fine-tuning grids once the run is done)


class AtomicBackupAndRestore(BackupAndRestoreHooks):
    """`BackupAndRestore` (epoch granularity) whose backup is one atomic commit.

    Keras writes ``latest.weights.h5`` and then ``training_metadata.json``;
    a process killed between the two resumes from a later epoch's weights
    with an earlier epoch number. Here each backup is written to
    ``epoch_<n>.weights.h5`` (weights + optimizer state) and then committed
    by atomically replacing ``backup.json`` ({"epoch": n, "weights": ...});
    older weight files are removed after the commit.
    """

    STATE = "backup.json"

    @classmethod
    def completed_epochs(cls, backup_dir):
        """Epochs a backup in `backup_dir` holds (0 when there is none)."""
        state = read_json(os.path.join(backup_dir, cls.STATE))
        return 0 if state is None else int(state["epoch"])

    def load_backup(self):
        state = read_json(os.path.join(self.backup_dir, self.STATE))
        if state is None:
            return 0
        if not self.model.built:
            raise ValueError("AtomicBackupAndRestore: build the model before fit()")
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.backup_dir, state["weights"]))
        return int(state["epoch"])

    def save_backup(self, epoch):
        name = f"epoch_{epoch}.weights.h5"
        with atomic_path(os.path.join(self.backup_dir, name), suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp, overwrite=True)
        write_json(os.path.join(self.backup_dir, self.STATE), {"epoch": epoch, "weights": name})
        for f in os.listdir(self.backup_dir):
            if f.startswith("epoch_") and f.endswith(".weights.h5") and f != name:
                os.remove(os.path.join(self.backup_dir, f))
