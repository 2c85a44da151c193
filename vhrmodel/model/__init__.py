"""Keras layers and models of the recogniser (one file per class)."""

from vhrmodel.model.bidirectional_lstm import BidirectionalLSTM
from vhrmodel.model.column_mask import BlankPadding, ColumnMask
from vhrmodel.model.crnn import CRNN, FORMAT_VERSION
from vhrmodel.model.crop_width import CropWidth
from vhrmodel.model.residual_block import ResidualBlock

__all__ = ["BidirectionalLSTM", "BlankPadding", "CRNN", "ColumnMask", "CropWidth", "FORMAT_VERSION", "ResidualBlock"]
