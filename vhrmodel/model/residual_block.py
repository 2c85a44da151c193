"""Basic two-convolution residual block (ResNet-18/34 style)."""

from __future__ import annotations

import keras

from vhrmodel.model.column_mask import ColumnMask


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        value = (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2 or any(v < 1 for v in value):
        raise ValueError(f"`{name}` must be a positive int or a pair of positive ints. Received: {name}={value}")
    return value


@keras.saving.register_keras_serializable(package="vhr")
class ResidualBlock(keras.layers.Layer):
    """Conv-BN-ReLU-Conv-BN plus a shortcut, then ReLU.

    The shortcut is the identity when the shape does not change. A strided block average-pools
    its shortcut (ResNet-D), and a block that changes the channel count adds a 1x1 convolution
    with batch normalisation. ResNet-D avoids the strided 1x1 convolution of the original
    ResNet, which discards 3/4 of the shortcut's input and, with fewer than 16 input channels,
    corrupts memory in TensorFlow 2.21's oneDNN backward pass on CPU. Downsampling happens in
    the first convolution, so a strided block costs a quarter of a full-resolution one.

    Args:
        filters: int. Output channels.
        kernel_size: int or (int, int). Size of both convolutions.
        strides: int or (int, int). (height, width) strides of the first convolution and
            of the shortcut.
        dropout: float. Spatial dropout rate after the block; 0 disables it.
        mask_downsample: int or None. With `mask_stride`, the block takes each line's width
            (`widths=`) and zeroes the columns past it after each ReLU (`ColumnMask`), so that
            what the next convolution sees does not depend on the batch. None: no masking.
        mask_stride: int or None. The width stride of the block's output in the model.
        **kwargs: standard `keras.layers.Layer` arguments such as `name` and `dtype`.

    Example:
        >>> import numpy as np
        >>> block = ResidualBlock(16, strides=(2, 1))
        >>> block(np.zeros((1, 8, 20, 8), "float32")).shape
        (1, 4, 20, 16)

    Reference:
        He et al., "Deep Residual Learning for Image Recognition", CVPR 2016; He et al.,
        "Bag of Tricks for Image Classification with Convolutional Neural Networks", CVPR 2019
        (ResNet-D shortcut).
    """

    def __init__(self, filters: int, kernel_size=3, strides=1, dropout: float = 0.0,
                 mask_downsample: int | None = None, mask_stride: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise ValueError(f"`filters` must be positive. Received: filters={filters}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout}")
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.dropout = float(dropout)
        if (mask_downsample is None) != (mask_stride is None):
            raise ValueError("`mask_downsample` and `mask_stride` go together. "
                             f"Received: mask_downsample={mask_downsample}, mask_stride={mask_stride}")
        self.mask_downsample = None if mask_downsample is None else int(mask_downsample)
        self.mask_stride = None if mask_stride is None else int(mask_stride)
        self.column_mask = (ColumnMask(self.mask_downsample, self.mask_stride, name="column_mask")
                            if self.mask_downsample is not None else None)

        conv = dict(padding="same", use_bias=False, kernel_initializer="he_normal", dtype=self.dtype_policy)
        self.conv1 = keras.layers.Conv2D(self.filters, self.kernel_size, strides=self.strides, name="conv1", **conv)
        self.bn1 = keras.layers.BatchNormalization(name="bn1", dtype=self.dtype_policy)
        self.conv2 = keras.layers.Conv2D(self.filters, self.kernel_size, name="conv2", **conv)
        self.bn2 = keras.layers.BatchNormalization(name="bn2", dtype=self.dtype_policy)
        self.shortcut_pool = None
        self.shortcut_conv = None
        self.shortcut_bn = None
        self.drop = keras.layers.SpatialDropout2D(self.dropout, dtype=self.dtype_policy) if self.dropout else None

    def build(self, inputs_shape, widths_shape=None):
        input_shape = inputs_shape
        self.conv1.build(input_shape)
        mid_shape = self.conv1.compute_output_shape(input_shape)
        self.bn1.build(mid_shape)
        self.conv2.build(mid_shape)
        self.bn2.build(mid_shape)
        shortcut_shape = input_shape
        if self.strides != (1, 1):
            self.shortcut_pool = keras.layers.AveragePooling2D(
                pool_size=self.strides, strides=self.strides, padding="same", name="shortcut_pool",
                dtype=self.dtype_policy,
            )
            shortcut_shape = self.shortcut_pool.compute_output_shape(input_shape)
        if input_shape[-1] != self.filters:
            self.shortcut_conv = keras.layers.Conv2D(
                self.filters, 1, use_bias=False, kernel_initializer="he_normal", name="shortcut_conv",
                dtype=self.dtype_policy,
            )
            self.shortcut_conv.build(shortcut_shape)
            self.shortcut_bn = keras.layers.BatchNormalization(name="shortcut_bn", dtype=self.dtype_policy)
            self.shortcut_bn.build(mid_shape)
        if self.drop is not None:
            self.drop.build(mid_shape)

    def call(self, inputs, widths=None, training=None):
        masked = self.column_mask is not None and widths is not None
        x = self.conv1(inputs)
        x = self.bn1(x, training=training)
        x = keras.ops.relu(x)
        if masked:
            x = self.column_mask(x, widths)
        x = self.conv2(x)
        x = self.bn2(x, training=training)
        shortcut = inputs
        if self.shortcut_pool is not None:
            shortcut = self.shortcut_pool(shortcut)
        if self.shortcut_conv is not None:
            shortcut = self.shortcut_bn(self.shortcut_conv(shortcut), training=training)
        x = keras.ops.relu(x + shortcut)
        if self.drop is not None:
            x = self.drop(x, training=training)
        if masked:
            x = self.column_mask(x, widths)
        return x

    def compute_output_shape(self, inputs_shape, widths_shape=None):
        return self.conv1.compute_output_shape(inputs_shape)[:-1] + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=list(self.kernel_size),
            strides=list(self.strides),
            dropout=self.dropout,
            mask_downsample=self.mask_downsample,
            mask_stride=self.mask_stride,
        )
        return config
