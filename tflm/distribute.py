"""Choosing a tf.distribute strategy (shared by pretraining and fine-tuning)."""

import json
import os

import tensorflow as tf

STRATEGIES = ("auto", "mirrored", "multiworker", "one")


def get_strategy(name="auto"):
    """`auto`: MultiWorkerMirrored when TF_CONFIG names several workers,
    Mirrored when more than one GPU is visible, else the default strategy.
    `mirrored` uses all local GPUs (or all logical CPUs when there is no GPU),
    `multiworker` requires TF_CONFIG, `one` is the single-device default.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")
    tf_config = _read_tf_config()
    if name == "multiworker" or (name == "auto" and tf_config and len(tf_config["cluster"].get("worker", [])) > 1):
        if not tf_config:
            raise ValueError("--strategy multiworker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(cpus)
    if name == "auto" and len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


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
