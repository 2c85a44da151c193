"""Recognise line images with a trained model file: `Recognizer` behind `vhrmodel predict`.

An image goes through `vhrdata.preprocess.preprocess_image` with the settings stored in the
model (the store's), so a line predicted from its file is exactly the tensor the model was
trained and evaluated on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vhrdata.preprocess import PAD_VALUE, ImageInput, preprocess_image
from vhrmodel.artifact import load_model, model_charset, model_settings

log = logging.getLogger(__name__)

DECODERS = ("greedy", "beam")


@dataclass
class Prediction:
    """One recognised line.

    Attributes:
        text: the decoded text.
        confidence: CTC probability of the text, as a per-character geometric mean in (0, 1]
            (see `vhrmodel.decoding`).
        ms: milliseconds spent on this line (preprocessing, model and decoding; a batch's time
            is shared equally among its lines).
        source: the path, or the position of an in-memory image.
    """

    text: str
    confidence: float
    ms: float
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pad_images(images: Sequence[np.ndarray], width_multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pad (H, W) uint8 images on the right with white: (uint8 [B, H, W'], int32 widths).

    W' is the widest image rounded up to `width_multiple`.
    """
    widths = np.array([im.shape[1] for im in images], np.int32)
    wmax = -(-int(widths.max()) // width_multiple) * width_multiple
    batch = np.full((len(images), images[0].shape[0], wmax), PAD_VALUE, np.uint8)
    for i, im in enumerate(images):
        batch[i, :, : im.shape[1]] = im
    return batch, widths


class Recognizer:
    """A loaded model plus its charset, preprocessing and decoder.

    Args:
        model: a model file path (checked by `vhrmodel.artifact.load_model`) or a loaded model.
        decoder: "greedy" or "beam".
        beam_width: beams kept by the beam decoder.
        lm: optional `vhrmodel.decoding.CharNgramLM` for the beam decoder (fit on training
            labels only).
        lm_weight: weight of the LM in beam search.

    Example:
        >>> rec = Recognizer("runs/demo/model.keras")          # doctest: +SKIP
        >>> rec.recognize(["line.png"])[0].text                # doctest: +SKIP
        'Số 253 đường Trần Phú'
    """

    def __init__(self, model, decoder: str = "greedy", beam_width: int = 10, lm=None, lm_weight: float = 0.5):
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}. Received: decoder={decoder!r}")
        self.model = load_model(model) if isinstance(model, (str, Path)) else model
        self.charset = model_charset(self.model)
        self.settings = model_settings(self.model)
        self.downsample = int(getattr(self.model, "downsample", 4))
        import keras

        # XLA backends compile per input shape: round widths up so that few shapes occur.
        self.width_multiple = 1 if keras.backend.backend() == "tensorflow" else 64
        self.decoder = decoder
        self.beam_width = int(beam_width)
        self.lm = lm
        self.lm_weight = float(lm_weight)

    def prepare(self, image: ImageInput) -> np.ndarray:
        """The model input for one image: `preprocess_image` with the model's settings."""
        return preprocess_image(image, self.settings)

    def logits(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Logits [B, T, C] and valid frame counts [B] of preprocessed (H, W) images."""
        batch, widths = pad_images(images, self.width_multiple)
        logits = np.asarray(self.model.predict_on_batch(batch[..., None]))
        return logits, np.maximum(widths // self.downsample, 1).astype(np.int32)

    def decode(self, logits: np.ndarray, lengths: np.ndarray) -> tuple[list[str], list[float]]:
        """Texts and confidences of a logits batch, with the configured decoder."""
        from vhrmodel.decoding import ctc_beam_decode, ctc_greedy_decode

        lengths = np.minimum(lengths, logits.shape[1])
        if self.decoder == "beam":
            return ctc_beam_decode(logits, self.charset, beam_width=self.beam_width, logit_lengths=lengths,
                                   lm=self.lm, lm_weight=self.lm_weight, return_confidence=True)
        return ctc_greedy_decode(logits, self.charset, logit_lengths=lengths, return_confidence=True)

    def warm_up(self) -> None:
        """Run the model on blank lines so graph tracing is not counted in the first lines' time.

        Two calls that differ in batch size and width make the traced graph general in both, so
        later batches of any size and width reuse it.
        """
        h = self.settings.height
        for n, w in ((1, 256), (2, 384)):
            self.logits([np.full((h, w), PAD_VALUE, np.uint8)] * n)

    def recognize(
        self,
        images: Sequence[ImageInput],
        batch_size: int = 1,
        callback: Callable[[int, int], None] | None = None,
    ) -> list[Prediction]:
        """Recognise images (paths, encoded bytes or arrays), in input order.

        Lines are batched by similar width to limit padding. Each `Prediction.ms` is its batch's
        wall time (read, preprocess, model, decode) divided by the batch's size.

        Args:
            images: the line images.
            batch_size: lines per model call.
            callback: called as callback(done, total) with line counts after each batch.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive. Received: batch_size={batch_size}")
        sources = [str(im) if isinstance(im, (str, Path)) else f"<image {i}>" for i, im in enumerate(images)]
        results: list[Prediction | None] = [None] * len(images)
        order = list(range(len(images)))
        if batch_size > 1:
            # Width is only known after decoding; file size is a cheap proxy for line length.
            order.sort(key=lambda i: _size_hint(images[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            t0 = time.perf_counter()
            prepared = [self.prepare(images[i]) for i in idx]
            logits, lengths = self.logits(prepared)
            texts, confs = self.decode(logits, lengths)
            ms = (time.perf_counter() - t0) * 1000.0 / len(idx)
            for i, text, conf in zip(idx, texts, confs):
                results[i] = Prediction(text=text, confidence=float(conf), ms=round(ms, 3), source=sources[i])
            if callback is not None:
                callback(start + len(idx), len(order))
        return results  # type: ignore[return-value]


def _size_hint(image: ImageInput) -> int:
    if isinstance(image, np.ndarray):
        return int(image.shape[1]) if image.ndim >= 2 else 0
    if isinstance(image, (bytes, bytearray, memoryview)):
        return len(image)
    try:
        return Path(image).stat().st_size
    except OSError:
        return 0


def predict(model_path: str | Path, images: Sequence[ImageInput], decoder: str = "greedy", batch_size: int = 1,
            beam_width: int = 10) -> list[Prediction]:
    """Convenience: load `model_path` and recognise `images`."""
    return Recognizer(model_path, decoder=decoder, beam_width=beam_width).recognize(images, batch_size=batch_size)
