"""`finetune`: the paper's fine-tuning grid, fault tolerant and distributed.

One run = one (learning rate, global batch size): a fresh copy of the
pretrained LM + a linear head (`Classifier`), Adam, sparse cross-entropy
from logits, `epochs` epochs, dev accuracy after every epoch. The run's
result is its best epoch by dev accuracy (that epoch's weights restored);
the grid selects the run with the best dev accuracy and reports its test
accuracy.

Files under `out_dir` (written by the chief; other workers of a
multi-worker job write the same layout under ``out_dir/workers/worker_<i>``):

    grid_state.json     settings + finished runs with their results (atomic);
                        a restarted grid skips finished runs
    grid_log.jsonl      one JSON event per line (run start / resume / skip / done)
    <run>/backup/       AtomicBackupAndRestore: weights + optimizer per epoch
    <run>/history.csv   per-epoch logs (loss, accuracy, val_loss, val_accuracy; Keras' CSVLogger)
    <run>/best.weights.h5, best.json  the best epoch's weights (`save_weights`) and its dev accuracy
    <run>/logs/         TensorBoard
    results.json, results.md, dev_accuracy.png
    selected_model.keras  the selected run's best weights (keras.models.load_model)

Interrupting the process at any point and calling `finetune` again with the
same arguments continues: finished runs are skipped, the interrupted run
resumes at its last completed epoch, and the final report equals the one an
uninterrupted grid writes (data order and dropout masks are functions of
(seed, epoch), and the backup holds weights and optimizer state).
"""

import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import time

import keras
import numpy as np

from tflm.callbacks import BACKUP_DIR, AtomicBackupAndRestore, Throughput, peak_rss_gb, read_json
from tflm.distribute import get_strategy
from tflm.finetune import callbacks as cb
from tflm.finetune import data as data_lib
from tflm.finetune.classifier import LMSnapshot
from tflm.finetune.config import FinetuneConfig
from tflm.atomic import append_line, atomic_path
from tflm.report import write_json
from tflm.tasks.splits import finetune_splits, resolve_task

HISTORY_FILE = "history.csv"
SELECTED_MODEL = "selected_model.keras"
STATE_FILE = "grid_state.json"
LOG_FILE = "grid_log.jsonl"
STATE_VERSION = 2  # 2: history.csv and best.weights.h5 (Keras' CSVLogger / ModelCheckpoint)


def run_id(lr, batch_size):
    return f"lr{lr:g}_bs{batch_size}"


def is_chief(strategy):
    """True unless this process is a non-chief worker of a multi-worker strategy."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    cluster = resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def worker_index(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return 0
    return int(resolver.task_id)


def _data_digest(enc):
    h = hashlib.sha256()
    for name in ("train", "dev", "test"):
        split = enc[name]
        h.update(name.encode())
        for ids in split.ids:
            h.update(np.asarray(ids, np.int32).tobytes())
            h.update(b"|")
        h.update(np.asarray(split.labels, np.int64).tobytes())
    return h.hexdigest()[:16]


# --- state ---------------------------------------------------------------------
class GridState:
    """`grid_state.json`: the settings and the finished runs (written atomically)."""

    def __init__(self, path, settings, write=True):
        self.path = path
        self.write = write
        state = read_json(path)
        if state is not None:
            if state.get("version") != STATE_VERSION:
                raise ValueError(
                    f"{path} was written by another tflm version (grid state version {state.get('version')}, "
                    f"this one writes {STATE_VERSION}); use another output folder or delete it"
                )
            old = state.get("settings", {})
            if old != settings:
                diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
                raise ValueError(
                    f"{os.path.dirname(path) or '.'} holds a fine-tuning grid started with other settings "
                    f"(differs in: {', '.join(diff)}); use another output folder or delete it"
                )
            self.state = state
        else:
            self.state = {"version": STATE_VERSION, "settings": settings, "runs": {}}
            self.save()

    def done(self, rid):
        return self.state["runs"].get(rid)

    def mark_done(self, rid, result):
        self.state["runs"][rid] = result
        self.save()

    def save(self):
        if self.write:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            write_json(self.path, self.state)


class EventLog:
    def __init__(self, path, write=True, verbose=True):
        self.path, self.write, self.verbose = path, write, verbose

    def __call__(self, event, **fields):
        rec = {"event": event, **fields, "time": round(time.time(), 3)}
        if self.write:
            append_line(self.path, json.dumps(rec))
        if self.verbose:
            extra = " ".join(f"{k}={v}" for k, v in fields.items())
            print(f"[tflm finetune] {event} {extra}", flush=True)


def read_events(out_dir):
    """The events of `grid_log.jsonl` (a list of dicts)."""
    path = os.path.join(out_dir, LOG_FILE)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    return [json.loads(line) for line in lines[:-1] if line.strip()]  # the last piece: "" or a partial line


# --- one run -------------------------------------------------------------------------
def _compile(model, lr, jit_compile, optimizer="adam"):
    from tflm.finetune.fused_adam import FusedAdam

    model.compile(
        optimizer={"adam": keras.optimizers.Adam, "fused_adam": FusedAdam}[optimizer](learning_rate=lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
    )


class RunModel:
    """One compiled `Classifier` for every run of a grid, reset at the start of each run.

    A fresh model per run costs twice: every run traces its train step again
    (~45 s for SmolLM2 on 2 cores), and TensorFlow keeps each traced step's
    captured variable buffers after the model is gone (measured with plain
    `model.fit`: +0.7 GB per run for a 40M-parameter Llama, +2 GB for
    SmolLM2; a 9-run grid ran out of memory). `reset(lr)` gives what a fresh
    build gives: the weights as built after ``set_random_seed(seed)`` (the
    pretrained body, the seeded head), the optimizer's variables as built
    (Adam's slots and step counter zero), the run's learning rate, and the
    dropout generators at their seeds. Traced functions are kept.
    """

    def __init__(self, snapshot, num_classes, strategy, seed=0, dropout=0.1, jit_compile=False, optimizer="adam"):
        from tflm._compat import seed_generators

        with strategy.scope():
            keras.utils.set_random_seed(seed)
            self.model = snapshot.classifier(num_classes, dropout=dropout)
            _compile(self.model, 1e-3, jit_compile, optimizer)  # the learning rate is set by `reset`
            self.model.optimizer.build(self.model.trainable_variables)
        self._weights = self.model.get_weights()
        self._optimizer = [None if not np.any(a := np.asarray(v)) else a for v in self.model.optimizer.variables]
        self._generators = seed_generators(self.model)
        self._seeds = [np.array(g.state) for g in self._generators]

    def reset(self, lr):
        model = self.model
        model.set_weights(self._weights)
        for v, value in zip(model.optimizer.variables, self._optimizer):
            v.assign(np.zeros(v.shape, v.dtype) if value is None else value)
        model.optimizer.learning_rate = float(lr)
        for g, state in zip(self._generators, self._seeds):
            g.state.assign(state)
        return model


def _history_columns(entries):
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    return {k: [e[k] for e in entries if k in e] for k in keys}


def train_run(
    run_model, enc, lr, batch_size, epochs, strategy, run_dir, seed=0,
    early_stop=None, pad_to_multiple=8, verbose="auto",
    callbacks=None, log=None, bucket_window=data_lib.BUCKET_WINDOW,
):
    """Train one configuration of `run_model` (a `RunModel` on `strategy`), resuming from `run_dir` if it
    holds a backup.

    Returns (result dict, the model with the best epoch's weights: `run_model`'s, reset by the next run).
    """
    t0 = time.time()
    log = log or (lambda *a, **k: None)
    num_replicas = strategy.num_replicas_in_sync
    n_train = len(enc["train"])
    batch_size = data_lib.check_batch_size(batch_size, num_replicas, n_train)
    steps = n_train // batch_size
    os.makedirs(run_dir, exist_ok=True)
    backup_dir = os.path.join(run_dir, BACKUP_DIR)
    history_path = os.path.join(run_dir, HISTORY_FILE)

    counter = data_lib.EpochCounter()
    lengths = enc["train"].lengths

    @functools.lru_cache(maxsize=1)  # the input pipeline and the tok/s callback both ask for it each epoch
    def epoch_plan(epoch):
        return data_lib.train_plan(lengths, batch_size, seed, epoch, bucket_window)

    train_ds = data_lib.distributed_dataset(
        strategy, enc["train"], lambda: epoch_plan(counter.epoch),
        steps, weighted=False, pad_to_multiple=pad_to_multiple,
    )
    eval_ds, eval_steps = {}, {}
    for name in ("dev", "test"):
        plan = data_lib.eval_plan(enc[name].lengths, batch_size)
        eval_steps[name] = len(plan)
        eval_ds[name] = data_lib.distributed_dataset(
            strategy, enc[name], lambda plan=plan: plan, len(plan), weighted=True,
            pad_to_multiple=pad_to_multiple, repeat=True,
        )

    model = run_model.reset(lr)
    done_epochs = AtomicBackupAndRestore.completed_epochs(backup_dir)
    entries = [e for e in cb.read_history(history_path) if e["epoch"] < done_epochs]
    finished = done_epochs >= epochs or cb.PatienceStop.should_stop(entries, early_stop)
    if done_epochs and not finished:
        log("run_resume", run=os.path.basename(run_dir), epoch=done_epochs + 1)
    elif not done_epochs:
        log("run_start", run=os.path.basename(run_dir))
    if not finished:
        fit_callbacks = [
            cb.SetEpoch(counter),
            cb.EpochSeeds(),
            Throughput(batch_size, "ex/s"),
            Throughput(lambda epoch: [int(lengths[b].sum()) for b in epoch_plan(epoch)], "tok/s"),
            cb.EpochLog(history_path, start_epoch=done_epochs),
            cb.BestCheckpoint(run_dir, start_epoch=done_epochs),
            *([cb.PatienceStop(early_stop, history=entries)] if early_stop is not None else []),
            AtomicBackupAndRestore(backup_dir),
            keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), write_graph=False),
            *(callbacks or []),
        ]
        model.fit(
            train_ds, epochs=epochs, validation_data=eval_ds["dev"], validation_steps=eval_steps["dev"],
            callbacks=fit_callbacks, verbose=verbose, shuffle=False,
        )
    entries = cb.read_history(history_path)
    best = read_json(os.path.join(run_dir, cb.BestCheckpoint.INFO))
    if best is None:
        raise RuntimeError(f"{run_dir}: no best checkpoint after training")
    model.load_weights(os.path.join(run_dir, cb.BestCheckpoint.WEIGHTS))
    dev = model.evaluate(eval_ds["dev"], steps=eval_steps["dev"], return_dict=True, verbose=0)
    test = model.evaluate(eval_ds["test"], steps=eval_steps["test"], return_dict=True, verbose=0)
    if not all(math.isfinite(e["loss"]) for e in entries):
        log("run_diverged", run=os.path.basename(run_dir))
    result = {
        "run": os.path.basename(run_dir),
        "lr": float(lr),
        "batch_size": int(batch_size),
        "replicas": int(num_replicas),
        "per_replica_batch_size": int(batch_size // num_replicas),
        "steps_per_epoch": int(steps),
        "epochs_run": len(entries),
        "stopped_early": len(entries) < epochs,
        "best_epoch": int(best["epoch"]) + 1,
        "dev_accuracy": float(dev["accuracy"]),
        "dev_loss": float(dev["loss"]),
        "test_accuracy": float(test["accuracy"]),
        "test_loss": float(test["loss"]),
        "history": _history_columns(entries),
        "wall_time_s": round(time.time() - t0, 2),
    }
    return result, model


def select_run(results):
    """The result with the best dev accuracy; ties go to the earlier run in grid order."""
    best = None
    for r in results:
        if best is None or r["dev_accuracy"] > best["dev_accuracy"]:
            best = r
    return best


# --- the grid ------------------------------------------------------------------------
def finetune(model, task, strategy="auto", verbose="auto", callbacks=None, **settings):
    """Run the fine-tuning grid, select by dev accuracy, report test accuracy.

    Args:
        model: a model SPEC for `tflm.load_lm` (preset, preset dir, HF dir,
            .gguf, tiny-gpt2, ...) or a `LanguageModel`.
        task: a task name or a folder of tsv files; or a whole `FinetuneConfig`
            (then no `settings`).
        strategy: "auto" | "mirrored" | "multiworker" | "one" (see
            `tflm.distribute.get_strategy`) or a `tf.distribute.Strategy`.
            Create it before any other TensorFlow work in a multi-worker job.
        verbose: Keras progress bar setting (0: also no event lines).
        callbacks: extra Keras callbacks for every run (after the built-in ones).
        **settings: the fields of `FinetuneConfig` (lrs, batch_sizes, epochs,
            out_dir, seed, early_stop, ...), validated there.

    Stages: `prepare_data` (splits, encoding, the LM snapshot), `run_grid`
    (train or skip each configuration, resumable), `finalize` (select, save,
    export, write the reports).

    Returns:
        The report (also written to ``out_dir/results.json``).
    """
    t_start = time.time()
    if isinstance(task, FinetuneConfig):
        if settings:
            raise TypeError(f"finetune: settings {sorted(settings)} given along with a FinetuneConfig")
        config = task
    else:
        config = FinetuneConfig(task=task, **settings)
    # A MultiWorkerMirroredStrategy must exist before other TensorFlow work.
    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    data = prepare_data(model, config, strat.num_replicas_in_sync)
    results, work_dir, log = run_grid(data, config, strat, verbose=verbose, callbacks=callbacks)
    return finalize(data, config, results, strat, work_dir, log, t_start)


@dataclasses.dataclass
class FinetuneData:
    """What `prepare_data` hands to the other stages."""

    lm: object
    model_id: str
    task: object
    prompt: str
    split_texts: dict
    split_how: str
    encoded: dict
    max_length: int
    batch_sizes: tuple
    snapshot: LMSnapshot


def model_identity(model, lm):
    """How reports name the model: the spec, or for a local path its folder / file name and weights' fingerprint.

    A report meant to be shipped never holds a path of the machine it ran on.
    """
    if not isinstance(model, str):
        return f"{lm.name}@{lm.fingerprint()}"
    if os.path.exists(model):
        return f"{os.path.basename(os.path.normpath(model))}@{lm.fingerprint()}"
    return model


def prepare_data(model, config, num_replicas=1):
    """Stage 1: the task's splits (encoded), the LM and its snapshot; checks the batch sizes."""
    task_obj = resolve_task(config.task)
    batch_sizes = config.grid_batch_sizes(task_obj.name)
    if config.prompt is True:
        if task_obj.prompt is None:
            raise ValueError(f"task {task_obj.name!r} has no prompt")
        prompt_text = task_obj.prompt
    else:
        prompt_text = config.prompt or None

    split_texts, split_how = finetune_splits(
        task_obj, config.data_dir, protocol=config.splits, seed=config.seed, max_train=config.max_train,
        max_eval=config.max_eval,
    )
    n_train = len(split_texts["train"][0])
    for bs in batch_sizes:
        data_lib.check_batch_size(bs, num_replicas, n_train)

    if isinstance(model, str):
        from tflm.models import load_lm

        lm = load_lm(model)
    else:
        lm = model
    lm = lm.with_dtype(config.dtype)  # mixed precision: float32 weights, `dtype` compute
    max_length = int(min(config.max_length or lm.max_sequence_length, lm.max_sequence_length))
    enc = {
        k: data_lib.encode_split(lm.tokenizer, t, y, prompt_text, max_length, config.strip_prompt_space)
        for k, (t, y) in split_texts.items()
    }
    return FinetuneData(
        lm=lm, model_id=model_identity(model, lm), task=task_obj, prompt=prompt_text, split_texts=split_texts,
        split_how=split_how, encoded=enc, max_length=max_length, batch_sizes=batch_sizes, snapshot=LMSnapshot(lm),
    )


def grid_settings(data, config):
    """What a resumed grid must share with the interrupted one (`grid_state.json`)."""
    return {
        "model": data.model_id,
        "task": data.task.name,
        "num_classes": data.task.num_classes,
        "prompt": data.prompt,
        "dtype": config.dtype,
        "strip_prompt_space": bool(config.strip_prompt_space),
        "max_length": data.max_length,
        "splits": data.split_how,
        "sizes": {k: len(v) for k, v in data.encoded.items()},
        "data_sha256": _data_digest(data.encoded),
        "seed": int(config.seed),
        "epochs": config.epochs,
        "early_stop": config.early_stop,
        "dropout": float(config.dropout),
        "pad_to_multiple": int(config.pad_to_multiple),
        "bucket_window": int(config.bucket_window),
        # Only when not Keras' Adam, so grids from before the option resume.
        **({} if config.optimizer == "adam" else {"optimizer": config.optimizer}),
    }


def run_grid(data, config, strategy, verbose="auto", callbacks=None):
    """Stage 2: every (lr, batch size) run, skipping finished ones; returns (results, work_dir, log)."""
    chief = is_chief(strategy)
    out_dir = config.out_dir
    work_dir = out_dir if chief else os.path.join(out_dir, "workers", f"worker_{worker_index(strategy)}")
    os.makedirs(work_dir, exist_ok=True)
    state = GridState(os.path.join(work_dir, STATE_FILE), grid_settings(data, config))
    log = EventLog(os.path.join(work_dir, LOG_FILE), verbose=chief and verbose != 0)
    log("grid_start", runs=len(config.lrs) * len(data.batch_sizes), replicas=strategy.num_replicas_in_sync)

    results = []
    run_model = None
    for lr in config.lrs:
        for bs in data.batch_sizes:
            rid = run_id(lr, bs)
            run_dir = os.path.join(work_dir, rid)
            done = state.done(rid)
            if done is not None:
                log("run_skip", run=rid, reason="finished")
                results.append(done)
                continue
            if run_model is None:
                run_model = RunModel(data.snapshot, data.task.num_classes, strategy, seed=config.seed,
                                     dropout=config.dropout, jit_compile=config.jit_compile,
                                     optimizer=config.optimizer)
            result, _ = train_run(
                run_model, data.encoded, lr, bs, config.epochs, strategy, run_dir,
                seed=config.seed, early_stop=config.early_stop, pad_to_multiple=config.pad_to_multiple,
                verbose=verbose, callbacks=callbacks, log=log, bucket_window=config.bucket_window,
            )
            state.mark_done(rid, result)
            log("run_done", run=rid, dev_accuracy=round(result["dev_accuracy"], 4),
                test_accuracy=round(result["test_accuracy"], 4), best_epoch=result["best_epoch"],
                peak_rss_gb=peak_rss_gb())
            results.append(result)
            shutil.rmtree(os.path.join(run_dir, BACKUP_DIR), ignore_errors=True)
            if not config.keep_weights:
                _prune_weights(work_dir, results)
    return results, work_dir, log


def finalize(data, config, results, strategy, work_dir, log, t_start):
    """Stage 3: select the run, save (and export) its model, write the reports (chief only)."""
    selected = select_run(results)
    report = {
        "model": data.model_id,
        "task": data.task.name,
        "prompt": data.prompt,
        "splits": data.split_how,
        "sizes": {k: len(v) for k, v in data.encoded.items()},
        "truncated": {k: v.truncated for k, v in data.encoded.items()},
        "lrs": list(config.lrs),
        "batch_sizes": list(data.batch_sizes),
        "batch_size_semantics": "global (summed over replicas); per replica = global / replicas",
        "epochs": config.epochs,
        "early_stop": config.early_stop,
        "seed": int(config.seed),
        "dropout": float(config.dropout),
        "optimizer": config.optimizer,
        "replicas": strategy.num_replicas_in_sync,
        "selection": "best dev accuracy (best epoch of each run; ties: earlier run in grid order)",
        "selected": {k: selected[k] for k in ("run", "lr", "batch_size", "best_epoch", "dev_accuracy", "test_accuracy")},
        "test_accuracy": selected["test_accuracy"],
        "runs": results,
        "wall_time_s": round(time.time() - t_start, 1),
    }
    if is_chief(strategy):
        from tflm.finetune.report import write_report

        best_weights = os.path.join(work_dir, selected["run"], cb.BestCheckpoint.WEIGHTS)
        saved_model = os.path.join(config.out_dir, SELECTED_MODEL)
        if os.path.isfile(best_weights):
            final = build_selected(data.snapshot, data.task.num_classes, config.dropout,
                                   os.path.join(work_dir, selected["run"]))
            with atomic_path(saved_model, suffix=".keras") as tmp:
                final.save(tmp)
        elif config.export_dir is not None:
            raise FileNotFoundError(
                f"cannot export {config.out_dir}: the selected run's best weights {best_weights} are gone "
                f"(a finished grid whose weights were not kept, e.g. results checked out without them); "
                f"delete {os.path.join(work_dir, STATE_FILE)} to train the grid again")
        else:
            # A finished grid without its weights (they are not shipped with results): the results stand,
            # only the selected model is not there to save.
            log("selected_weights_missing", run=selected["run"])
        # Paths in the report are relative to its folder: it may be shipped.
        report["selected_model"] = SELECTED_MODEL if os.path.isfile(saved_model) else None
        if config.export_dir is not None:
            from tflm.finetune.export import export_classifier

            # The export serves float32 whatever the training dtype: the trained (float32 master) weights
            # with float32 compute, so it runs on any device and matches the Keras model within 1e-5.
            served = final if config.dtype == "float32" else build_selected(
                data.snapshot, data.task.num_classes, config.dropout, os.path.join(work_dir, selected["run"]),
                dtype="float32")
            export_classifier(
                served, config.export_dir, data.lm.tokenizer, label_names=list(data.task.label_names),
                prompt=data.prompt, strip_prompt_space=config.strip_prompt_space, max_length=data.max_length,
                check_texts=data.split_texts["dev"][0][:1000], raw_text=config.export_raw_text,
                extra={"task": data.task.name, "model": data.model_id, "selected": report["selected"],
                       "dtype": "float32", "trained_dtype": config.dtype},
            )
            report["export_dir"] = os.path.relpath(config.export_dir, config.out_dir)
        write_report(report, config.out_dir)
    log("grid_done", selected=selected["run"], test_accuracy=round(selected["test_accuracy"], 4))
    return report


def build_selected(snapshot, num_classes, dropout, run_dir, dtype=None):
    """A `Classifier` (default strategy) with the best weights of the run in `run_dir` (`dtype`: another policy)."""
    model = snapshot.classifier(num_classes, dropout=dropout, dtype=dtype)
    model.load_weights(os.path.join(run_dir, cb.BestCheckpoint.WEIGHTS))
    return model


def _prune_weights(work_dir, results):
    keep = select_run(results)["run"]
    for r in results:
        if r["run"] != keep:
            path = os.path.join(work_dir, r["run"], cb.BestCheckpoint.WEIGHTS)
            if os.path.isfile(path):
                os.remove(path)
