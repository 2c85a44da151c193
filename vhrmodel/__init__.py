"""vhrmodel: residual-CNN + BiLSTM CTC recogniser for handwritten Vietnamese text lines."""

__version__ = "0.1.0"
