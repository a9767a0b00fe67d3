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
