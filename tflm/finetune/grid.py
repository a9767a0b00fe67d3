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
    <run>/history.json  per-epoch logs (loss, accuracy, val_loss, val_accuracy)
    <run>/best.*        the best epoch's weights and its dev accuracy
    <run>/logs/         TensorBoard
    results.json, results.md, dev_accuracy.png
    selected_model.keras  the selected run's best weights (keras.models.load_model)

Interrupting the process at any point and calling `finetune` again with the
same arguments continues: finished runs are skipped, the interrupted run
resumes at its last completed epoch, and the final report equals the one an
uninterrupted grid writes (data order and dropout masks are functions of
(seed, epoch), and the backup holds weights and optimizer state).
"""

import hashlib
import json
import math
import os
import shutil
import time

import keras
import numpy as np

from tflm.callbacks import AtomicBackupAndRestore, Throughput, read_json
from tflm.finetune import callbacks as cb
from tflm.finetune import data as data_lib
from tflm.finetune.classifier import LMSnapshot
from tflm.report import write_json

DEFAULT_LRS = (5e-5, 1e-4, 3e-4)
DEFAULT_BATCH_SIZES = {"sst2": (8, 16, 32), "sst5": (8, 16, 32), "agnews": (8, 12, 16)}
FALLBACK_BATCH_SIZES = (8, 16, 32)
STATE_FILE = "grid_state.json"
LOG_FILE = "grid_log.jsonl"
STATE_VERSION = 1


# --- argument checking --------------------------------------------------------------
def parse_grid(values, kind, what):
    """A list of positive numbers from a comma-separated string or a sequence.

    Raises ValueError naming `what` (e.g. "--lrs") for a value that is not a
    number, not positive or not finite, or a repeated value.
    """
    if values is None:
        return None
    items = [t.strip() for t in values.split(",")] if isinstance(values, str) else list(values)
    if not items or any(isinstance(t, str) and not t for t in items):
        raise ValueError(f"{what}: expected a comma-separated list of numbers, got {values!r}")
    out = []
    for t in items:
        try:
            if kind is int:
                if isinstance(t, float) and not t.is_integer():
                    raise ValueError
                v = int(t) if not isinstance(t, str) else int(t, 10)
            else:
                if isinstance(t, bool):
                    raise ValueError
                v = float(t)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: {t!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"{what}: {t!r} must be a positive number")
        if v in out:
            raise ValueError(f"{what}: {t!r} is repeated")
        out.append(v)
    return out


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
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
        if self.verbose:
            extra = " ".join(f"{k}={v}" for k, v in fields.items())
            print(f"[tflm finetune] {event} {extra}", flush=True)


def read_events(out_dir):
    """The events of `grid_log.jsonl` (a list of dicts)."""
    path = os.path.join(out_dir, LOG_FILE)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# --- one run -------------------------------------------------------------------------
def _compile(model, lr, jit_compile):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
    )


def _history_columns(entries):
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    return {k: [e[k] for e in entries if k in e] for k in keys}


def train_run(
    snapshot, num_classes, enc, lr, batch_size, epochs, strategy, run_dir, seed=0,
    early_stop=None, dropout=0.1, pad_to_multiple=8, jit_compile=False, verbose="auto",
    callbacks=None, log=None,
):
    """Train one configuration (resuming from `run_dir` if it holds a backup).

    Returns (result dict, model with the best epoch's weights).
    """
    t0 = time.time()
    log = log or (lambda *a, **k: None)
    num_replicas = strategy.num_replicas_in_sync
    n_train = len(enc["train"])
    batch_size = data_lib.check_batch_size(batch_size, num_replicas, n_train)
    steps = n_train // batch_size
    os.makedirs(run_dir, exist_ok=True)
    backup_dir = os.path.join(run_dir, "backup")
    history_path = os.path.join(run_dir, "history.json")

    counter = data_lib.EpochCounter()
    train_ds = data_lib.distributed_dataset(
        strategy, enc["train"], lambda: data_lib.train_plan(n_train, batch_size, seed, counter.epoch),
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

    with strategy.scope():
        keras.utils.set_random_seed(seed)
        model = snapshot.classifier(num_classes, dropout=dropout)
        _compile(model, lr, jit_compile)

    done_epochs = AtomicBackupAndRestore.completed_epochs(backup_dir)
    entries = read_json(history_path, default=[])[:done_epochs]
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
            cb.EpochLog(history_path),
            cb.BestCheckpoint(run_dir),
            *([cb.PatienceStop(history_path, early_stop)] if early_stop is not None else []),
            AtomicBackupAndRestore(backup_dir),
            keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), write_graph=False),
            *(callbacks or []),
        ]
        model.fit(
            train_ds, epochs=epochs, validation_data=eval_ds["dev"], validation_steps=eval_steps["dev"],
            callbacks=fit_callbacks, verbose=verbose, shuffle=False,
        )
    entries = read_json(history_path, default=[])
    best = read_json(os.path.join(run_dir, "best.json"))
    if best is None:
        raise RuntimeError(f"{run_dir}: no best checkpoint after training")
    cb.load_weights_npz(model, os.path.join(run_dir, "best.weights.npz"))
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
def finetune(
    model,
    task,
    data_dir=None,
    prompt=False,
    lrs=DEFAULT_LRS,
    batch_sizes=None,
    epochs=10,
    strategy="auto",
    out_dir="finetune_out",
    seed=0,
    early_stop=None,
    max_train=None,
    max_eval=None,
    splits="paper",
    dropout=0.1,
    max_length=None,
    strip_prompt_space=False,
    pad_to_multiple=8,
    jit_compile=False,
    export_dir=None,
    export_raw_text=False,
    keep_weights=False,
    verbose="auto",
    callbacks=None,
    dtype="float32",
):
    """Run the fine-tuning grid, select by dev accuracy, report test accuracy.

    Args:
        model: a model SPEC for `tflm.load_lm` (preset, preset dir, HF dir,
            .gguf, tiny-gpt2, ...) or a `LanguageModel`.
        task: a task name or a folder of tsv files (`task_from_folder`).
        data_dir: where the task's tsv files are (see `load_split`).
        prompt: False, True (the task's prompt, the paper's "*" rows), or a
            prompt string.
        lrs: learning rates (a sequence or a comma-separated string).
        batch_sizes: GLOBAL batch sizes: the number of examples per
            optimizer step summed over all replicas (each replica gets
            batch / replicas, which must divide). Default: the paper's
            {8, 16, 32} (sst2, sst5) or {8, 12, 16} (agnews).
        epochs: epochs per run (10 in the paper).
        strategy: "auto" | "mirrored" | "multiworker" | "one" (see
            `tflm.distribute.get_strategy`) or a `tf.distribute.Strategy`.
            Create it before any other TensorFlow work in a multi-worker job.
        out_dir: output folder; calling again with the same folder resumes.
        dtype: compute dtype; "bfloat16" / "float16" train with the Keras
            mixed policy (float32 weights).
        seed: seeds the splits, the head's initialisation, data order and dropout.
        early_stop: None, or stop a run after this many epochs without a
            better dev accuracy.
        max_train / max_eval: seeded subsets of at most this many training /
            dev and test examples.
        splits: "paper" (see `finetune_splits`) or "files".
        dropout: dropout before the linear head (0.1 in the reference).
        max_length: token limit of text + prompt (default: the model's
            context); longer texts lose their start, the prompt is kept.
        strip_prompt_space: drop the prompt's trailing space.
        pad_to_multiple: batches are padded to their longest example rounded
            up to this multiple (fewer distinct shapes to trace).
        jit_compile: XLA (recompiles for every new padded length; off by default).
        export_dir: also export the selected model as a SavedModel there.
        export_raw_text: add the optional raw-string endpoint to the export
            (GPT-2 BPE only; loading it then needs `import tensorflow_text`).
        keep_weights: keep every run's best weights (default: only the
            selected-so-far run's, to bound disk use).
        verbose: Keras progress bar setting.
        callbacks: extra Keras callbacks for every run (after the built-in ones).

    Returns:
        The report (also written to ``out_dir/results.json``).
    """
    t_start = time.time()
    from tflm.distribute import get_strategy

    lrs = parse_grid(lrs, float, "--lrs")
    batch_sizes = parse_grid(batch_sizes, int, "--batch-sizes")
    # A MultiWorkerMirroredStrategy must exist before other TensorFlow work.
    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    epochs = int(epochs)
    if epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {epochs}")
    if early_stop is not None and int(early_stop) < 1:
        raise ValueError(f"--early-stop must be >= 1, got {early_stop}")
    early_stop = None if early_stop is None else int(early_stop)
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")

    task_obj = data_lib.resolve_task(task)
    if batch_sizes is None:
        batch_sizes = list(DEFAULT_BATCH_SIZES.get(task_obj.name, FALLBACK_BATCH_SIZES))
    if prompt is True:
        if task_obj.prompt is None:
            raise ValueError(f"task {task_obj.name!r} has no prompt")
        prompt_text = task_obj.prompt
    elif prompt:
        prompt_text = str(prompt)
    else:
        prompt_text = None

    split_texts, split_how = data_lib.finetune_splits(
        task_obj, data_dir, protocol=splits, seed=seed, max_train=max_train, max_eval=max_eval
    )
    n_train = len(split_texts["train"][0])
    for bs in batch_sizes:
        data_lib.check_batch_size(bs, strat.num_replicas_in_sync, n_train)

    if isinstance(model, str):
        from tflm.models import load_lm

        lm = load_lm(model)
        model_id = model
    else:
        lm = model
        model_id = f"{lm.name}@{lm.fingerprint()}"
    lm = lm.with_dtype(dtype)  # mixed precision: float32 weights, `dtype` compute
    max_length = int(min(max_length or lm.max_sequence_length, lm.max_sequence_length))
    enc = {
        k: data_lib.encode_split(lm.tokenizer, t, y, prompt_text, max_length, strip_prompt_space)
        for k, (t, y) in split_texts.items()
    }
    snapshot = LMSnapshot(lm)

    chief = is_chief(strat)
    work_dir = out_dir if chief else os.path.join(out_dir, "workers", f"worker_{worker_index(strat)}")
    os.makedirs(work_dir, exist_ok=True)
    settings = {
        "model": model_id,
        "task": task_obj.name,
        "num_classes": task_obj.num_classes,
        "prompt": prompt_text,
        "dtype": dtype,
        "strip_prompt_space": bool(strip_prompt_space),
        "max_length": max_length,
        "splits": split_how,
        "sizes": {k: len(v) for k, v in enc.items()},
        "data_sha256": _data_digest(enc),
        "seed": int(seed),
        "epochs": epochs,
        "early_stop": early_stop,
        "dropout": float(dropout),
        "pad_to_multiple": int(pad_to_multiple),
    }
    state = GridState(os.path.join(work_dir, STATE_FILE), settings)
    log = EventLog(os.path.join(work_dir, LOG_FILE), verbose=chief and verbose != 0)
    log("grid_start", runs=len(lrs) * len(batch_sizes), replicas=strat.num_replicas_in_sync)

    grid = [(lr, bs) for lr in lrs for bs in batch_sizes]
    results = []
    for lr, bs in grid:
        rid = run_id(lr, bs)
        run_dir = os.path.join(work_dir, rid)
        done = state.done(rid)
        if done is not None:
            log("run_skip", run=rid, reason="finished")
            results.append(done)
            continue
        result, _ = train_run(
            snapshot, task_obj.num_classes, enc, lr, bs, epochs, strat, run_dir, seed=seed,
            early_stop=early_stop, dropout=dropout, pad_to_multiple=pad_to_multiple,
            jit_compile=jit_compile, verbose=verbose, callbacks=callbacks, log=log,
        )
        state.mark_done(rid, result)
        log("run_done", run=rid, dev_accuracy=round(result["dev_accuracy"], 4),
            test_accuracy=round(result["test_accuracy"], 4), best_epoch=result["best_epoch"])
        results.append(result)
        shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)
        if not keep_weights:
            _prune_weights(work_dir, results)

    selected = select_run(results)
    report = {
        "model": model_id,
        "task": task_obj.name,
        "prompt": prompt_text,
        "splits": split_how,
        "sizes": settings["sizes"],
        "truncated": {k: v.truncated for k, v in enc.items()},
        "lrs": lrs,
        "batch_sizes": batch_sizes,
        "batch_size_semantics": "global (summed over replicas); per replica = global / replicas",
        "epochs": epochs,
        "early_stop": early_stop,
        "seed": int(seed),
        "dropout": float(dropout),
        "replicas": strat.num_replicas_in_sync,
        "selection": "best dev accuracy (best epoch of each run; ties: earlier run in grid order)",
        "selected": {k: selected[k] for k in ("run", "lr", "batch_size", "best_epoch", "dev_accuracy", "test_accuracy")},
        "test_accuracy": selected["test_accuracy"],
        "runs": results,
        "wall_time_s": round(time.time() - t_start, 1),
    }
    if chief:
        from tflm.finetune.report import write_report

        final = build_selected(snapshot, task_obj.num_classes, dropout, os.path.join(work_dir, selected["run"]))
        report["selected_model"] = os.path.join(out_dir, "selected_model.keras")
        final.save(report["selected_model"])
        if export_dir is not None:
            from tflm.finetune.export import export_classifier

            export_classifier(
                final, export_dir, lm.tokenizer, label_names=list(task_obj.label_names), prompt=prompt_text,
                strip_prompt_space=strip_prompt_space, max_length=max_length,
                check_texts=split_texts["dev"][0][:1000], raw_text=export_raw_text,
                extra={"task": task_obj.name, "model": model_id, "selected": report["selected"]},
            )
            report["export_dir"] = export_dir
        write_report(report, out_dir)
    log("grid_done", selected=selected["run"], test_accuracy=round(selected["test_accuracy"], 4))
    return report


def build_selected(snapshot, num_classes, dropout, run_dir):
    """A `Classifier` (default strategy) with the best weights of the run in `run_dir`."""
    model = snapshot.classifier(num_classes, dropout=dropout)
    cb.load_weights_npz(model, os.path.join(run_dir, "best.weights.npz"))
    return model


def _prune_weights(work_dir, results):
    keep = select_run(results)["run"]
    for r in results:
        if r["run"] != keep:
            path = os.path.join(work_dir, r["run"], "best.weights.npz")
            if os.path.isfile(path):
                os.remove(path)
