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


def adapt_to_strategy(model, strategy) -> None:
    """Work around two Keras 3 (TF trainer) faults in `model.fit` under `tf.distribute`.

    1. Before the first step, Keras builds the model from the first distributed batch, which
       it first averages with `strategy.reduce`: that cannot take a dict of per-replica
       tensors ("unsupported type dict") and is meaningless for uint8 images. The model is
       built from the first replica's own batch instead, which has the right shapes and dtypes.
    2. Under `MultiWorkerMirroredStrategy` every step's logs are averaged with
       `strategy.reduce("MEAN", v, axis=0)`, which fails on scalar metrics ("Invalid
       reduction dimension 0 for input with 0 dimensions", tensorflow#72388). Each scalar
       log is given a batch axis of one, so the reduction is the mean over the workers.

    It also makes every BatchNormalization layer synchronised (statistics of the global
    batch, the same on every replica), so the replicas' moving statistics stay equal and
    match what one machine with the global batch computes. The flag lives on the layer
    objects only: the model file is rebuilt from the CRNN config, so it stays loadable on
    JAX and torch.

    Nothing changes without a strategy or off the TensorFlow backend.
    """
    if strategy is None or keras.backend.backend() != "tensorflow" or not hasattr(model, "_symbolic_build"):
        return
    import tensorflow as tf

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = keras.tree.map_structure(local, next(it))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    object.__setattr__(model, "_maybe_symbolic_build", maybe_symbolic_build)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and worker_shard()[1] > 1:
        def with_batch_axis(step):
            def wrapped(data):
                logs = step(data)
                return keras.tree.map_structure(
                    lambda v: keras.ops.reshape(v, (1,)) if len(keras.ops.shape(v)) == 0 else v, logs)
            return wrapped

        object.__setattr__(model, "train_step", with_batch_axis(model.train_step))
        object.__setattr__(model, "test_step", with_batch_axis(model.test_step))
