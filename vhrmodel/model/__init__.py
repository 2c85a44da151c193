"""Keras layers and models of the recogniser (one file per class)."""

from vhrmodel.model.crnn import CRNN
from vhrmodel.model.crop_width import CropWidth
from vhrmodel.model.residual_block import ResidualBlock

__all__ = ["CRNN", "CropWidth", "ResidualBlock"]
