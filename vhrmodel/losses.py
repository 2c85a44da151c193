"""CTC loss for the recogniser (blank = class 0, as in `vhrdata.charset.Charset`)."""

from __future__ import annotations

import keras
from keras import ops


def ctc_loss(labels, logits, label_lengths, logit_lengths):
    """Per-sample CTC negative log-likelihood.

    Args:
        labels: int [B, L], 1-based character ids, padded with anything beyond `label_lengths`.
        logits: float [B, T, num_classes], unnormalised (the model output; the backend applies
            log-softmax).
        label_lengths: int [B].
        logit_lengths: int [B], valid frames per sample (<= T).

    Returns:
        float [B] loss.

    Example:
        >>> import numpy as np
        >>> loss = ctc_loss(np.array([[1, 2]]), np.zeros((1, 5, 3), "float32"), np.array([2]), np.array([5]))
        >>> tuple(loss.shape)
        (1,)
    """
    labels = ops.cast(labels, "int32")
    label_lengths = ops.cast(label_lengths, "int32")
    logit_lengths = ops.cast(logit_lengths, "int32")
    if keras.backend.backend() == "tensorflow":
        return _tf_kernel_ctc_loss(labels, logits, label_lengths, logit_lengths)
    return ops.ctc_loss(labels, logits, label_lengths, logit_lengths, mask_index=0)


def _tf_kernel_ctc_loss(labels, logits, label_lengths, logit_lengths):
    """`ctc_loss` on TensorFlow by its compiled CTC kernel (the one `tf.*` use outside the tf.data
    adapter and the exports).

    Keras' TensorFlow backend hands dense labels to `tf.nn.ctc_loss`, which on a CPU runs a
    Python-built scan of the forward-backward recursion; with sparse labels TensorFlow runs its
    C++ kernel instead. The values are the same (tests compare them); in one run of
    `benchmarks/ctc_loss.py` the loss with its gradient was 29× faster, a whole `small` training
    step 2.4× and the eager loss of validation 60×. The kernel wants the blank last, so the blank's column
    moves to the end and the ids shift down by one.

    A line with fewer frames than its label needs (the store build quarantines these as
    `ctc_infeasible`, so none reach training from a store) gets an infinite loss from the kernel
    when its repeated characters make it infeasible, and a zero loss with no gradient when the
    label is longer than its frames; the dense scan gives a large finite value for both.
    """
    import tensorflow as tf

    logits = tf.convert_to_tensor(logits)
    result_dtype = keras.backend.result_type(logits.dtype, "float32")
    logits = tf.cast(logits, tf.float32)  # the kernel's type, as Keras casts for the dense scan
    labels = tf.pad(tf.convert_to_tensor(labels), [[0, 0], [0, 1]])  # room for the stand-in below
    # The kernel refuses an empty label (a val line whose characters are all outside the charset):
    # it reads a stand-in of one character, and such a line's loss is that of all blanks instead.
    empty = tf.equal(label_lengths, 0)
    mask = tf.sequence_mask(tf.where(empty, 1, label_lengths), tf.shape(labels)[1])
    indices = tf.where(mask)
    ids = tf.where(tf.gather(empty, indices[:, 0]), 0, tf.gather_nd(labels, indices) - 1)
    sparse = tf.SparseTensor(indices, ids, tf.shape(labels, out_type=tf.int64))
    blank_last = tf.concat([logits[:, :, 1:], logits[:, :, :1]], axis=2)
    loss = tf.compat.v1.nn.ctc_loss(sparse, blank_last, logit_lengths, preprocess_collapse_repeated=False,
                                    ctc_merge_repeated=True, ignore_longer_outputs_than_inputs=True,
                                    time_major=False)
    own = tf.sequence_mask(logit_lengths, tf.shape(logits)[1], dtype=logits.dtype)
    # Only the blank's log-probability, not the whole log-softmax: this runs on every training step.
    blank = logits[:, :, 0] - tf.reduce_logsumexp(logits, axis=2)
    all_blank = -tf.reduce_sum(blank * own, axis=1)
    loss = tf.where(empty, all_blank, loss)
    return tf.cast(loss, result_dtype)


@keras.saving.register_keras_serializable(package="vhr")
class CTCLoss(keras.losses.Loss):
    """Keras loss for `model.fit` with y = int32 [B, L] labels padded with 0.

    The label length of each sample is its count of non-zero ids (0 is the blank, which never
    occurs inside a label). The loss runs over all T frames of the batch: the model sets every
    frame past a line's own (`width // downsample`) to a certain blank (`BlankPadding`), so
    this equals the loss over the line's own frames, and y needs nothing but the labels. This
    is the `(x, y)` contract of `vhrmodel.inputs.to_keras`.

    Args:
        name: str. Loss name.
        **kwargs: standard `keras.losses.Loss` arguments (`reduction`, `dtype`).

    Example:
        >>> import numpy as np
        >>> loss = CTCLoss()
        >>> float(loss(np.array([[1, 2, 0]]), np.zeros((1, 6, 3), "float32"))) > 0
        True

    Reference:
        Graves et al., "Connectionist Temporal Classification", ICML 2006.
    """

    def __init__(self, name: str = "ctc_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        labels = ops.cast(y_true, "int32")
        label_lengths = ops.sum(ops.cast(ops.not_equal(labels, 0), "int32"), axis=-1)
        frames = ops.shape(y_pred)[1]
        logit_lengths = ops.ones_like(label_lengths) * frames
        return ctc_loss(labels, y_pred, label_lengths, logit_lengths)

    def get_config(self):
        return super().get_config()
