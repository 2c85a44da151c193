"""Per-line column masks: what keeps a line's output independent of the batch it is in."""

from __future__ import annotations

import keras
from keras import ops


def valid_columns(widths, downsample: int, stride: int):
    """Columns of each line that hold its own pixels at a feature map of width stride `stride`.

    The model crops every line to a multiple of `downsample` (its total width stride) and
    emits `width // downsample` frames (`vhrdata.ctc.frames_for_width`); at an intermediate map
    of stride `stride` (a divisor of `downsample`), that is `frames * downsample // stride`.
    """
    frames = ops.floor_divide(ops.cast(widths, "int32"), downsample)
    return frames * (downsample // stride)


@keras.saving.register_keras_serializable(package="vhr")
class ColumnMask(keras.layers.Layer):
    """Zero the columns of a [B, H, W, C] feature map that lie beyond each line's own width.

    With "same" padding a convolution sees zeros past the right edge of a line that is alone
    in its batch. In a batch with wider lines it would instead see the padding's features,
    which after a convolution, batch normalisation and ReLU are no longer zero. Multiplying
    every map that feeds a convolution by this mask restores the zeros, so a line's features
    are the same alone, in any batch, and padded to any width.

    Args:
        downsample: int. The model's total width stride.
        stride: int. The width stride of the maps this layer masks (divides `downsample`).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
        >>> import numpy as np
        >>> x = np.ones((2, 1, 8, 1), "float32")
        >>> ColumnMask(4, 1)(x, np.array([8, 5]))[1, 0, :, 0].tolist()
        [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]

    Reference:
        Shi et al., "An End-to-End Trainable Neural Network for Image-based Sequence
        Recognition" (CRNN), TPAMI 2017.
    """

    def __init__(self, downsample: int, stride: int = 1, **kwargs):
        super().__init__(**kwargs)
        downsample, stride = int(downsample), int(stride)
        if downsample < 1 or stride < 1 or downsample % stride:
            raise ValueError(
                f"`stride` must be a positive divisor of `downsample`. Received: downsample={downsample}, stride={stride}"
            )
        self.downsample = downsample
        self.stride = stride

    def call(self, inputs, widths):
        valid = valid_columns(widths, self.downsample, self.stride)
        columns = ops.arange(ops.shape(inputs)[2], dtype="int32")
        mask = ops.cast(ops.less(columns[None, :], valid[:, None]), inputs.dtype)
        return inputs * mask[:, None, :, None]

    def compute_output_shape(self, inputs_shape, widths_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(downsample=self.downsample, stride=self.stride)
        return config


@keras.saving.register_keras_serializable(package="vhr")
class BlankPadding(keras.layers.Layer):
    """Make every frame past a line's own frames a certain blank, in [B, T, C] logits.

    The frames a line's width gives (`width // downsample`) are left untouched. Beyond them the
    logits become `margin` for the blank (class 0) and 0 for every character, so the CTC
    alignment of a padded line is its own frames followed by blanks: a full-length CTC loss
    then equals the loss on the line's own frames (to within exp(-margin)), and any decoder may
    read all T frames and get the text of the line's own frames.

    Args:
        downsample: int. The model's total width stride.
        margin: float. Blank logit of a padding frame.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
        >>> import numpy as np
        >>> out = BlankPadding(4)(np.zeros((1, 3, 2), "float32"), np.array([8]))
        >>> out[0, :, 0].tolist()
        [0.0, 0.0, 30.0]
    """

    def __init__(self, downsample: int, margin: float = 30.0, **kwargs):
        super().__init__(**kwargs)
        self.downsample = int(downsample)
        self.margin = float(margin)

    def call(self, inputs, widths):
        logits = inputs
        frames = valid_columns(widths, self.downsample, self.downsample)
        steps = ops.arange(ops.shape(logits)[1], dtype="int32")
        inside = ops.less(steps[None, :], frames[:, None])[:, :, None]
        classes = ops.arange(ops.shape(logits)[2], dtype="int32")
        blank = ops.cast(ops.equal(classes, 0), logits.dtype) * self.margin
        return ops.where(inside, logits, ops.broadcast_to(blank[None, None, :], ops.shape(logits)))

    def compute_output_shape(self, inputs_shape, widths_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(downsample=self.downsample, margin=self.margin)
        return config
