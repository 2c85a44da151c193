"""Residual-CNN + BiLSTM line recogniser trained with CTC."""

from __future__ import annotations

import math
from typing import Any, Sequence

import keras

from vhrdata.ctc import frames_for_width
from vhrmodel.artifact import FORMAT_VERSION
from vhrmodel.model.bidirectional_lstm import BidirectionalLSTM
from vhrmodel.model.column_mask import BlankPadding, ColumnMask
from vhrmodel.model.crop_width import CropWidth
from vhrmodel.model.residual_block import ResidualBlock, _pair

HEIGHT_REDUCTIONS = ("reshape", "max", "mean")


@keras.saving.register_keras_serializable(package="vhr")
class CRNN(keras.Model):
    """Text-line recogniser: uint8 line image in, per-frame CTC logits out.

    Inputs: a dict with "images", uint8 [B, H, W, 1] with dark ink on white, padded on the
    right with 255 (`vhrdata.preprocess.PAD_VALUE`), H fixed per model and W free; and
    "widths", int32 [B], each line's own width in pixels. The model maps pixels to
    `1 - x / 255`, so ink is 1 and paper and padding are 0 (what zero-padded convolutions see
    beyond the border). A residual CNN downsamples the height and the width, the height is
    collapsed, a BiLSTM stack reads the columns, and a Dense layer gives logits.

    Batch invariance: every feature map that feeds a convolution is multiplied by a mask of
    the line's own columns (`ColumnMask`), the BiLSTM reads each line within its own frames
    (`BidirectionalLSTM`), and frames past a line's own are set to a certain blank
    (`BlankPadding`). A line's logits on its own frames are therefore the same alone, in a
    batch with wider lines and padded to any width, and the CTC loss over all frames equals
    the loss over its own frames.

    Output: float32 logits [B, W // downsample, num_classes], class 0 is the CTC blank and
    class i >= 1 is character i of `vhrdata.charset.Charset`. `downsample` is the product of
    the width strides of the stem and the stages (4 in every preset); line b has
    `widths[b] // downsample` frames of its own (`num_frames`).

    Args:
        num_classes: int. Charset size + 1 (the blank).
        height: int. Input image height in pixels.
        stem_filters: int. Filters of the plain strided convolution before the residual
            stages; 0 means no stem.
        stem_kernel_size: int or (int, int). Kernel of the stem convolution.
        stem_strides: int or (int, int). (height, width) strides of the stem.
        stage_filters: list of int. Filters of each residual stage.
        stage_blocks: list of int. Residual blocks per stage.
        stage_strides: list of (int, int). (height, width) strides of the first block of
            each stage.
        height_reduction: "reshape" (flatten the remaining rows into the features), "max" or
            "mean" (pool the remaining rows).
        projection_dim: int or None. Width of a linear projection of the column features
            before the LSTMs; None keeps the CNN feature size.
        lstm_units: int. Units per direction of each BiLSTM layer.
        lstm_layers: int. Number of BiLSTM layers.
        dropout: float. Dropout before each BiLSTM layer and before the logits.
        cnn_dropout: float. Spatial dropout after each residual block.
        alphabet: str or None. The charset's characters in id order; stored in the model file
            so a saved model can decode its own output. When given,
            `num_classes == len(alphabet) + 1` is checked.
        preprocessing: dict or None. The store's preprocessing settings (JSON-able), stored in
            the model file so prediction can apply exactly the same preprocessing.
        **kwargs: standard `keras.Model` arguments such as `name`.

    Example:
        >>> import numpy as np
        >>> model = CRNN(num_classes=10, height=32, stem_filters=8, stage_filters=[8, 16],
        ...              stage_blocks=[1, 1], stage_strides=[[2, 2], [2, 1]],
        ...              lstm_units=16, lstm_layers=1)
        >>> x = {"images": np.full((2, 32, 103, 1), 255, "uint8"), "widths": np.array([103, 60])}
        >>> model(x).shape
        (2, 25, 10)

    Reference:
        Shi et al., "An End-to-End Trainable Neural Network for Image-based Sequence
        Recognition", TPAMI 2017; He et al., "Deep Residual Learning for Image Recognition",
        CVPR 2016; Graves et al., "Connectionist Temporal Classification", ICML 2006.
    """

    def __init__(
        self,
        num_classes: int,
        height: int,
        stem_filters: int = 32,
        stem_kernel_size=3,
        stem_strides=(2, 2),
        stage_filters: Sequence[int] = (32, 64, 128),
        stage_blocks: Sequence[int] = (1, 1, 1),
        stage_strides: Sequence[Sequence[int]] = ((1, 1), (2, 2), (2, 1)),
        height_reduction: str = "reshape",
        projection_dim: int | None = None,
        lstm_units: int = 128,
        lstm_layers: int = 2,
        dropout: float = 0.2,
        cnn_dropout: float = 0.0,
        alphabet: str | None = None,
        preprocessing: dict[str, Any] | None = None,
        format_version: int = FORMAT_VERSION,
        **kwargs,
    ):
        if int(format_version) != FORMAT_VERSION:
            raise ValueError(
                f"This vhr reads model format {FORMAT_VERSION}; the file is format {format_version}. "
                f"Received: format_version={format_version}"
            )
        num_classes = int(num_classes)
        height = int(height)
        stem_filters = int(stem_filters)
        stem_kernel_size = _pair(stem_kernel_size, "stem_kernel_size")
        stem_strides = _pair(stem_strides, "stem_strides")
        stage_filters = [int(f) for f in stage_filters]
        stage_blocks = [int(b) for b in stage_blocks]
        stage_strides = [_pair(s, "stage_strides") for s in stage_strides]
        if num_classes < 2:
            raise ValueError(f"`num_classes` must be at least 2 (blank + one character). Received: num_classes={num_classes}")
        if alphabet is not None and num_classes != len(alphabet) + 1:
            raise ValueError(
                "`num_classes` must be len(alphabet) + 1 (index 0 is the blank). "
                f"Received: num_classes={num_classes}, len(alphabet)={len(alphabet)}"
            )
        if height < 1:
            raise ValueError(f"`height` must be positive. Received: height={height}")
        if not (len(stage_filters) == len(stage_blocks) == len(stage_strides)):
            raise ValueError(
                "`stage_filters`, `stage_blocks` and `stage_strides` must have the same length. "
                f"Received: {len(stage_filters)}, {len(stage_blocks)}, {len(stage_strides)}"
            )
        if any(b < 1 for b in stage_blocks):
            raise ValueError(f"Every stage needs at least one block. Received: stage_blocks={stage_blocks}")
        if not stem_filters and not stage_filters:
            raise ValueError("The CNN needs a stem or at least one stage. Received: stem_filters=0, stage_filters=[]")
        if height_reduction not in HEIGHT_REDUCTIONS:
            raise ValueError(f"`height_reduction` must be one of {HEIGHT_REDUCTIONS}. Received: height_reduction={height_reduction!r}")
        if int(lstm_layers) < 0 or int(lstm_units) < 1:
            raise ValueError(f"`lstm_layers` must be >= 0 and `lstm_units` >= 1. Received: lstm_layers={lstm_layers}, lstm_units={lstm_units}")

        strides = ([stem_strides] if stem_filters else []) + stage_strides
        downsample = math.prod(s[1] for s in strides)
        rows = height
        for s in strides:
            rows = -(-rows // s[0])  # "same" padding: ceil division

        # === Layers ===
        crop = CropWidth(downsample, name="crop_width")
        rescale = keras.layers.Rescaling(scale=-1.0 / 255.0, offset=1.0, name="ink")
        input_mask = ColumnMask(downsample, 1, name="input_mask")
        stride = 1
        stem = []
        if stem_filters:
            stride *= stem_strides[1]
            stem = [
                keras.layers.Conv2D(stem_filters, stem_kernel_size, strides=stem_strides, padding="same",
                                    use_bias=False, kernel_initializer="he_normal", name="stem_conv"),
                keras.layers.BatchNormalization(name="stem_bn"),
                keras.layers.ReLU(name="stem_relu"),
            ]
            stem_mask = ColumnMask(downsample, stride, name="stem_mask")
        blocks = []
        for i, (filters, count, stage_stride) in enumerate(zip(stage_filters, stage_blocks, stage_strides)):
            for j in range(count):
                block_stride = stage_stride if j == 0 else (1, 1)
                stride *= block_stride[1]
                blocks.append(ResidualBlock(filters, strides=block_stride, dropout=cnn_dropout,
                                            mask_downsample=downsample, mask_stride=stride,
                                            name=f"stage{i + 1}_block{j + 1}"))
        channels = stage_filters[-1] if stage_filters else stem_filters
        # [B, rows, T, C] -> [B, T, rows, C] so that reshape keeps one vector per frame.
        to_columns = keras.layers.Permute((2, 1, 3), name="to_columns")
        if height_reduction == "reshape":
            collapse = [keras.layers.Reshape((-1, rows * channels), name="collapse_height")]
        else:
            pool = keras.layers.MaxPooling2D if height_reduction == "max" else keras.layers.AveragePooling2D
            collapse = [pool(pool_size=(1, rows), name="pool_height"), keras.layers.Reshape((-1, channels), name="collapse_height")]
        projection = keras.layers.Dense(int(projection_dim), name="projection") if projection_dim else None
        rnn = []
        for k in range(int(lstm_layers)):
            rnn.append((keras.layers.Dropout(dropout, name=f"lstm{k + 1}_dropout"),
                        BidirectionalLSTM(int(lstm_units), downsample=downsample, name=f"bilstm{k + 1}")))
        head_dropout = keras.layers.Dropout(dropout, name="logits_dropout")
        head = keras.layers.Dense(num_classes, name="logits", dtype="float32")
        blank_padding = BlankPadding(downsample, name="blank_padding", dtype="float32")

        # === Functional model ===
        images = keras.Input(shape=(height, None, 1), dtype="uint8", name="images")
        widths = keras.Input(shape=(), dtype="int32", name="widths")
        x = input_mask(rescale(crop(images)), widths)
        if stem:
            for layer in stem:
                x = layer(x)
            x = stem_mask(x, widths)
        for block in blocks:
            x = block(x, widths=widths)
        x = to_columns(x)
        for layer in collapse:
            x = layer(x)
        if projection is not None:
            x = projection(x)
        for drop, bilstm in rnn:
            x = bilstm(drop(x), widths)
        logits = blank_padding(head(head_dropout(x)), widths)
        super().__init__(inputs={"images": images, "widths": widths}, outputs=logits, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.height = height
        self.stem_filters = stem_filters
        self.stem_kernel_size = stem_kernel_size
        self.stem_strides = stem_strides
        self.stage_filters = stage_filters
        self.stage_blocks = stage_blocks
        self.stage_strides = stage_strides
        self.height_reduction = height_reduction
        self.projection_dim = int(projection_dim) if projection_dim else None
        self.lstm_units = int(lstm_units)
        self.lstm_layers = int(lstm_layers)
        self.dropout = float(dropout)
        self.cnn_dropout = float(cnn_dropout)
        self.alphabet = alphabet
        self.preprocessing = dict(preprocessing) if preprocessing is not None else None
        self.downsample = downsample

    @property
    def charset(self):
        """The `vhrdata.charset.Charset` stored in the model, or None."""
        from vhrdata.charset import Charset

        return None if self.alphabet is None else Charset(self.alphabet)

    def num_frames(self, width):
        """Output frames of a line `width` pixels wide (int or int array)."""
        return frames_for_width(width, self.downsample)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "num_classes": self.num_classes,
            "height": self.height,
            "stem_filters": self.stem_filters,
            "stem_kernel_size": list(self.stem_kernel_size),
            "stem_strides": list(self.stem_strides),
            "stage_filters": list(self.stage_filters),
            "stage_blocks": list(self.stage_blocks),
            "stage_strides": [list(s) for s in self.stage_strides],
            "height_reduction": self.height_reduction,
            "projection_dim": self.projection_dim,
            "lstm_units": self.lstm_units,
            "lstm_layers": self.lstm_layers,
            "dropout": self.dropout,
            "cnn_dropout": self.cnn_dropout,
            "alphabet": self.alphabet,
            "preprocessing": self.preprocessing,
            "format_version": FORMAT_VERSION,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
