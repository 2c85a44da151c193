"""Scale-out on `tf.distribute`: the strategy for this process and its share of the store.

Several GPUs on one machine use `MirroredStrategy`; several machines use
`MultiWorkerMirroredStrategy`, configured by the standard `TF_CONFIG` environment variable
(set by a Slurm or Kubernetes job template, see docs/TRAINING.md). Each worker reads only its
own share of the training split (`worker_shard`), so no worker reads what another reads.
"""

from __future__ import annotations

import json
import os

import keras


def distribution_strategy():
    """A `tf.distribute` strategy when several GPUs or a TF_CONFIG cluster are present, else None.

    Only with the TensorFlow backend; the model code stays backend-neutral.
    """
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return None


def worker_shard() -> tuple[int, int]:
    """(index, count) of this worker in a TF_CONFIG cluster; (0, 1) otherwise."""
    cfg = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster = cfg.get("cluster") or {}
    chiefs = len(cluster.get("chief", []))
    workers = len(cluster.get("worker", [])) + chiefs
    task = cfg.get("task") or {}
    index = int(task.get("index", 0)) + (chiefs if task.get("type") == "worker" else 0)
    return (index, workers) if workers > 1 else (0, 1)


def is_chief() -> bool:
    """True for the process that writes the run folder: the chief, or worker 0 without one."""
    cfg = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = cfg.get("task") or {}
    if not task:
        return True
    has_chief = bool((cfg.get("cluster") or {}).get("chief"))
    return task.get("type") == "chief" or (not has_chief and task.get("type") == "worker" and int(task.get("index", 0)) == 0)


class NullScope:
    """Stands in for `strategy.scope()` when there is no strategy."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
