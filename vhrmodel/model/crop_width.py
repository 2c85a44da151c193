"""Crop an image batch to a width that is a multiple of the model's downsampling factor."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="vhr")
class CropWidth(keras.layers.Layer):
    """Drop the rightmost `width % multiple` columns of a [B, H, W, C] batch.

    With "same"-padded strided convolutions a width W becomes ceil(W / s); after the crop every
    stride divides exactly, so the network yields exactly `W // multiple` frames for any W,
    which is the frame count the store assumed when it checked CTC feasibility. The dropped
    columns (at most `multiple - 1`) are right margin or white padding.

    Args:
        multiple: int. The width is cropped to a multiple of this.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
        >>> import numpy as np
        >>> CropWidth(4)(np.zeros((1, 8, 10, 1), "uint8")).shape
        (1, 8, 8, 1)

    Reference:
        Shi et al., "An End-to-End Trainable Neural Network for Image-based Sequence
        Recognition" (CRNN), TPAMI 2017: one output frame per fixed-width image column band.
    """

    def __init__(self, multiple: int = 4, **kwargs):
        super().__init__(**kwargs)
        if int(multiple) < 1:
            raise ValueError(f"`multiple` must be positive. Received: multiple={multiple}")
        self.multiple = int(multiple)

    def call(self, inputs):
        if self.multiple == 1:
            return inputs
        width = keras.ops.shape(inputs)[2]
        return inputs[:, :, : (width // self.multiple) * self.multiple, :]

    def compute_output_shape(self, input_shape):
        width = input_shape[2]
        if width is not None:
            width = (width // self.multiple) * self.multiple
        return (input_shape[0], input_shape[1], width, input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(multiple=self.multiple)
        return config
