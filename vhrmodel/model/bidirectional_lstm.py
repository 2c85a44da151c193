"""A bidirectional LSTM whose backward direction starts at each line's own last frame."""

from __future__ import annotations

import keras
from keras import ops


def reverse_within_lengths(x, lengths):
    """Reverse each sequence of [B, T, ...] `x` within its first `lengths[b]` steps.

    Steps past a sequence's length stay where they are. The map is its own inverse.
    """
    steps = ops.arange(ops.shape(x)[1], dtype="int32")[None, :]
    lengths = ops.cast(lengths, "int32")[:, None]
    index = ops.where(ops.less(steps, lengths), lengths - 1 - steps, steps)
    return ops.take_along_axis(x, index[:, :, None], axis=1)


@keras.saving.register_keras_serializable(package="vhr")
class BidirectionalLSTM(keras.layers.Layer):
    """Forward and backward LSTMs over [B, T, F] frames, each line read within its own length.

    `keras.layers.Bidirectional` reverses the whole padded sequence, so the backward LSTM of a
    short line in a batch with a wide one starts in the padding and its state differs from the
    same line alone. Here the backward direction runs a forward LSTM over each line reversed
    within its own frame count (`lengths`), then reverses the result back: a line's outputs on
    its own frames depend only on its own frames. Both directions are plain LSTMs without a
    mask, so the layer exports to LiteRT and ONNX like any LSTM.

    Args:
        units: int. Units per direction.
        downsample: int. The second call argument is divided by this to give each line's
            frame count: the model passes line widths in pixels and its total width stride.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
        >>> import numpy as np
        >>> layer = BidirectionalLSTM(4)
        >>> layer(np.zeros((2, 5, 3), "float32"), np.array([5, 2])).shape
        (2, 5, 8)

    Reference:
        Graves and Schmidhuber, "Framewise phoneme classification with bidirectional LSTM and
        other neural network architectures", Neural Networks 2005.
    """

    def __init__(self, units: int, downsample: int = 1, **kwargs):
        super().__init__(**kwargs)
        if int(units) < 1 or int(downsample) < 1:
            raise ValueError(f"`units` and `downsample` must be positive. Received: units={units}, downsample={downsample}")
        self.units = int(units)
        self.downsample = int(downsample)
        self.forward_lstm = keras.layers.LSTM(self.units, return_sequences=True, name="forward",
                                              dtype=self.dtype_policy)
        self.backward_lstm = keras.layers.LSTM(self.units, return_sequences=True, name="backward",
                                               dtype=self.dtype_policy)

    def build(self, inputs_shape, lengths_shape=None):
        self.forward_lstm.build(inputs_shape)
        self.backward_lstm.build(inputs_shape)

    def call(self, inputs, lengths, training=None):
        lengths = ops.floor_divide(ops.cast(lengths, "int32"), self.downsample)
        forward = self.forward_lstm(inputs, training=training)
        backward = self.backward_lstm(reverse_within_lengths(inputs, lengths), training=training)
        return ops.concatenate([forward, reverse_within_lengths(backward, lengths)], axis=-1)

    def compute_output_shape(self, inputs_shape, lengths_shape):
        return tuple(inputs_shape[:-1]) + (2 * self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, downsample=self.downsample)
        return config
