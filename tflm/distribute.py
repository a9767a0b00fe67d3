"""Choosing a tf.distribute strategy (shared by pretraining and fine-tuning)."""

import json
import os

import tensorflow as tf

STRATEGIES = ("auto", "mirrored", "multiworker", "one")


_CACHE = {}


def get_strategy(name="auto"):
    """`auto`: MultiWorkerMirrored when TF_CONFIG names several workers,
    Mirrored when more than one GPU is visible, else the default strategy.
    `mirrored` uses all local GPUs (or all logical CPUs when there is no GPU),
    `multiworker` requires TF_CONFIG, `one` is the single-device default.

    Strategies are created once per process and reused: a second
    MirroredStrategy over the same devices reuses the first one's collective
    keys, and its all-reduces then fail with "Shape mismatch in the collective
    instance" when the two train differently shaped models (e.g. training the
    xent and then the Quad model in one process); TF also allows only one
    MultiWorkerMirroredStrategy per process.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")
    tf_config = _read_tf_config()
    if name == "multiworker" or (name == "auto" and tf_config and len(tf_config["cluster"].get("worker", [])) > 1):
        if not tf_config:
            raise ValueError("strategy 'multiworker' needs the TF_CONFIG environment variable")
        return _cached("multiworker", tf.distribute.MultiWorkerMirroredStrategy)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" and not gpus:
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return _cached("mirrored-cpu", lambda: tf.distribute.MirroredStrategy(cpus))
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return _cached("mirrored-gpu", tf.distribute.MirroredStrategy)
    return tf.distribute.get_strategy()


def _cached(kind, make):
    if kind not in _CACHE:
        _CACHE[kind] = make()
    return _CACHE[kind]


def _read_tf_config():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        cfg = json.loads(raw)
        workers = cfg["cluster"]["worker"]
        task = cfg["task"]
        if not isinstance(workers, list) or task["type"] not in cfg["cluster"] or not isinstance(task["index"], int):
            raise ValueError("bad structure")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"malformed TF_CONFIG ({e}): expected JSON like "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
        ) from None
    return cfg


def local_tf_configs(num_workers, host="127.0.0.1"):
    """TF_CONFIG values (JSON strings) for `num_workers` worker processes on this machine.

    Each worker gets a free port on `host`; worker 0 is the chief. Set
    worker i's TF_CONFIG environment variable to the i-th string before it
    imports TensorFlow. (A port is free when this returns; another process
    could take it before the worker binds it.)
    """
    import socket

    if int(num_workers) < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    socks = []
    try:
        for _ in range(int(num_workers)):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        cluster = {"worker": [f"{host}:{s.getsockname()[1]}" for s in socks]}
    finally:
        for s in socks:
            s.close()
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(len(socks))]


def run_local_workers(argv, num_workers=2, timeout=None, env=None, host="127.0.0.1"):
    """Run the command `argv` as `num_workers` local processes of one multi-worker job; wait for all.

    Worker i gets the i-th TF_CONFIG of `local_tf_configs` in its environment
    (`env`, default os.environ, plus TF_CONFIG). When a worker fails, the
    others are killed (they would wait for it forever).

    Returns:
        a list of `subprocess.CompletedProcess` (text stdout and stderr), worker 0 (the chief) first.

    Raises:
        RuntimeError naming the first worker that failed, with the end of its stderr.
        TimeoutError when the job runs longer than `timeout` seconds.
    """
    import contextlib
    import subprocess
    import tempfile
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    failed = None
    with contextlib.ExitStack() as stack:
        logs = stack.enter_context(tempfile.TemporaryDirectory(prefix="tflm_workers_"))
        procs, files = [], []
        try:
            for i, tf_config in enumerate(local_tf_configs(num_workers, host)):
                out, err = (stack.enter_context(open(os.path.join(logs, f"{i}.{kind}"), "w+", encoding="utf-8"))
                            for kind in ("out", "err"))
                files.append((out, err))
                worker_env = dict(os.environ if env is None else env, TF_CONFIG=tf_config)
                procs.append(subprocess.Popen(list(argv), env=worker_env, stdout=out, stderr=err, text=True))
            while failed is None and any(p.poll() is None for p in procs):
                failed = next((i for i, p in enumerate(procs) if p.returncode not in (None, 0)), None)
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{num_workers} local workers did not finish within {timeout} s")
                time.sleep(0.2)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        done = []
        for (out, err), p in zip(files, procs):
            out.seek(0)
            err.seek(0)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out.read(), err.read()))
    if failed is None:
        failed = next((i for i, r in enumerate(done) if r.returncode != 0), None)
    if failed is not None:
        r = done[failed]
        raise RuntimeError(f"worker {failed} of {num_workers} failed (exit code {r.returncode}):\n{r.stderr[-3000:]}")
    return done
