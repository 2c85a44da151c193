"""Recognise line images with a trained model: `Recognizer` behind `vhrmodel predict` and the server.

An image goes through `vhrdata.preprocess` with the settings stored in the model (the store's),
so a line predicted from its file is exactly the tensor the model was trained and evaluated on.
The model is batch-invariant, so a line reads the same alone and in any batch, and decoded text
is normalised as `vhrmodel.metrics.normalize_text` scores it (no space at either end, one between
words), so the numbers `vhrmodel evaluate` reports are exactly what `predict` returns.

This module imports neither TensorFlow nor Keras: a `.keras` file loads Keras when opened, an
exported model only its own runtime.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vhrdata.charset import Charset
from vhrdata.errors import VhrError
from vhrdata.preprocess import ImageInput, PreprocessSettings, decode_gray, preprocess_gray
from vhrmodel.runtime import Runtime, frame_lengths, open_runtime

log = logging.getLogger(__name__)

DECODERS = ("greedy", "beam")


@dataclass
class CharInfo:
    """One recognised character.

    Attributes:
        char: the character.
        confidence: its highest posterior probability on the frames it is emitted on.
        frames: [start, end) output frames of its CTC alignment.
        x: [x0, x1) pixels in the model input (the preprocessed line).
        x_original: [x0, x1) pixels in the original image, or None when the preprocessing crops
            margins (the crop offset is not tracked).
    """

    char: str
    confidence: float
    frames: tuple[int, int]
    x: tuple[int, int]
    x_original: tuple[int, int] | None


@dataclass
class Prediction:
    """One recognised line.

    Attributes:
        text: the decoded text ("" when `error` is set).
        confidence: CTC probability of the text, as a per-character geometric mean in (0, 1]
            (see `vhrmodel.decoding`).
        ms: milliseconds spent on this line (preprocessing, model and decoding; a batch's time
            is shared equally among its lines).
        source: the path, or the position of an in-memory image.
        chars: per-character confidences and positions.
        error: why the image could not be read (only with `recognize(..., on_error="report")`).
    """

    text: str
    confidence: float
    ms: float
    source: str = ""
    chars: list[CharInfo] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Recognizer:
    """A model plus its charset, preprocessing and decoder, on whichever runtime it needs.

    Args:
        model: a `.keras` file, an exported model folder (`vhrmodel export`), "starter" (the
            model shipped in the package), a loaded Keras model, or a `Runtime`.
        decoder: "greedy" or "beam".
        beam_width: beams kept by the beam decoder; None: the width the LM was tuned at
            (`vhrmodel tune-lm`), else `vhrmodel.lm.DEFAULT_BEAM_WIDTH` (10).
        lm: optional `vhrmodel.decoding.CharNgramLM` for the beam decoder (fit on training
            labels, and optionally the address corpus; `vhrmodel.lm`); it needs decoder="beam".
        lm_weight: weight of the LM in beam search; None: the LM file's tuned value
            (`vhrmodel tune-lm`), else `vhrmodel.lm.DEFAULT_LM_WEIGHT` (0.5).
        lexicon: snap low-confidence, unambiguous address fields to administrative unit names
            after decoding (`vhrmodel.lexicon`): a `Lexicon`, True for the vietnamadminunits
            names plus the units of the LM's training labels (`lexicon_for(lm)`), or None/False
            for none. Meant for beam search with an LM, but works after any
            decoder. A line whose snapped text has characters outside the model's charset is
            kept as decoded.
        snap: the lexicon thresholds (`vhrmodel.lexicon.SnapSettings`); None: the LM file's
            tuned ones, else the documented defaults.

    Example:
        >>> rec = Recognizer("runs/demo/model.keras")          # doctest: +SKIP
        >>> rec.recognize(["line.png"])[0].text                # doctest: +SKIP
        'Số 253 đường Trần Phú'
    """

    def __init__(self, model, decoder: str = "greedy", beam_width: int | None = None, lm=None,
                 lm_weight: float | None = None,
                 lexicon=None, snap=None):
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}. Received: decoder={decoder!r}")
        if lm is not None and decoder != "beam":
            raise ValueError("a character LM is only used by beam search; pass decoder='beam'")
        if lexicon is True:  # before the model: a missing rapidfuzz is said in a second
            from vhrmodel.lexicon import lexicon_for

            lexicon = lexicon_for(lm)
        self.runtime: Runtime = open_runtime(model)
        self.charset = Charset(self.runtime.alphabet)
        try:
            self.settings = PreprocessSettings.from_dict(dict(self.runtime.preprocessing))
        except (TypeError, ValueError) as ex:
            from vhrmodel.errors import ModelFileError

            raise ModelFileError(f"the model's preprocessing settings are not usable by this vhr: {ex}") from None
        self.downsample = int(self.runtime.downsample)
        self.decoder = decoder
        from vhrmodel.lm import resolve_beam_width

        self.beam_width = resolve_beam_width(lm, beam_width)
        if self.beam_width < 1:
            raise ValueError(f"beam_width must be positive. Received: beam_width={beam_width}")
        from vhrmodel.lm import resolve_lm_weight, tuned_values

        self.lm = lm
        self.lm_weight = resolve_lm_weight(lm, lm_weight)
        self.lexicon = lexicon or None
        if snap is None and self.lexicon is not None:
            from vhrmodel.lexicon import SnapSettings

            tuned = tuned_values(lm).get("snap")
            snap = SnapSettings.from_dict(tuned) if tuned else SnapSettings()
        self.snap = snap

    @property
    def model(self):
        """The Keras model behind a Keras runtime (None for exported runtimes)."""
        return getattr(self.runtime, "model", None)

    def prepare(self, image: ImageInput) -> tuple[np.ndarray, int]:
        """(model input, original width) of one image, with the model's preprocessing settings."""
        gray = decode_gray(image)
        return preprocess_gray(gray, self.settings)[0], int(gray.shape[1])

    def logits(self, images: Sequence[np.ndarray], group: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Logits [B, T, C] and own frame counts [B] of preprocessed (H, W) images.

        `group`: run more lines than this in calls of at most `group` lines of similar width
        (`vhrmodel.runtime.batch_logits`); None: one call.
        """
        from vhrmodel.runtime import batch_logits

        return batch_logits(self.runtime, list(images), group=group)

    def decode(self, logits: np.ndarray, lengths: np.ndarray) -> tuple[list[str], list[float]]:
        """Texts and confidences of a logits batch, with the configured decoder (and lexicon)."""
        from vhrmodel.decoding import ctc_beam_decode, ctc_greedy_decode

        lengths = np.minimum(lengths, logits.shape[1])
        if self.decoder == "beam":
            texts, confs = ctc_beam_decode(logits, self.charset, beam_width=self.beam_width, logit_lengths=lengths,
                                           lm=self.lm, lm_weight=self.lm_weight, return_confidence=True)
        else:
            texts, confs = ctc_greedy_decode(logits, self.charset, logit_lengths=lengths, return_confidence=True)
        texts, confs = self._normalized(texts, confs, logits, lengths)
        if self.lexicon is not None:
            texts, confs = self.apply_lexicon(texts, confs, logits, lengths)
        return texts, confs

    def _normalized(self, texts: Sequence[str], confs: Sequence[float], logits: np.ndarray, lengths: np.ndarray
                    ) -> tuple[list[str], list[float]]:
        """Decoded texts as `vhrmodel.metrics.normalize_text` writes them (one space between
        words, none at either end), the form `evaluate` scores, so `predict`, the server and
        the reports give the same string; a changed line's confidence is that of its new text."""
        from vhrmodel.decoding import ctc_confidences, log_softmax
        from vhrmodel.metrics import normalize_text

        out_texts, out_confs = list(texts), list(confs)
        for i, text in enumerate(texts):
            clean = normalize_text(text)
            if clean == text:
                continue
            out_texts[i] = clean
            length = int(lengths[i])
            out_confs[i] = ctc_confidences(log_softmax(logits[i : i + 1, :length]),
                                           [self.charset.encode(clean).tolist()], np.array([length]))[0]
        return out_texts, out_confs

    def char_spans(self, texts: Sequence[str], logits: np.ndarray, lengths: np.ndarray
                   ) -> list[list[tuple[int, int, float]]]:
        """Per line, (first frame, end frame, confidence) of each character of `texts` on a
        logits batch [B, T, C]: one CTC alignment pass for the whole batch
        (`vhrmodel.decoding.ctc_char_spans_batch`), each line on its own frames."""
        from vhrmodel.decoding import ctc_char_spans_batch, log_softmax

        ids = [self.charset.encode(t).tolist() if t else [] for t in texts]
        return ctc_char_spans_batch(log_softmax(logits), ids, np.minimum(lengths, logits.shape[1]))

    def char_confidences(self, text: str, logits: np.ndarray, length: int) -> list[float]:
        """Per-character confidences of `text` on one line's logits [T, C] (as in `CharInfo`)."""
        return [conf for _, _, conf in self.char_spans([text], logits[None], np.array([length]))[0]]

    def apply_lexicon(self, texts: Sequence[str], confs: Sequence[float], logits: np.ndarray, lengths: np.ndarray,
                      snap=None, char_confs: Sequence[Sequence[float]] | None = None,
                      scorers: Sequence[Callable[[Sequence[str]], list[float]]] | None = None
                      ) -> tuple[list[str], list[float]]:
        """Snap the decoded `texts` with the lexicon; the confidence of a changed line is recomputed.

        Args:
            texts, confs: decoded lines and their confidences.
            logits, lengths: the batch they were decoded from.
            snap: thresholds; default this recognizer's.
            char_confs: per-character confidences of `texts`, if already known (else computed).
            scorers: (rescoring) one `line_scorer` per line, if already made (e.g. with a memo, when
                the same lines are snapped with many settings); else made here.
        """
        from vhrmodel.decoding import ctc_confidences, log_softmax
        from vhrmodel.lexicon import snap_fields

        snap = snap or self.snap
        out_texts, out_confs = list(texts), list(confs)
        if char_confs is None:
            char_confs = [[conf for _, _, conf in spans] for spans in self.char_spans(texts, logits, lengths)]
        for i, text in enumerate(texts):
            if not text:
                continue
            per_char = char_confs[i]
            scorer = None
            if snap.rescore:
                scorer = scorers[i] if scorers is not None else self.line_scorer(logits[i, : int(lengths[i])])
            new, snaps = snap_fields(text, per_char, self.lexicon, snap, scorer=scorer)
            if not snaps or any(ch not in self.charset for ch in new):
                continue
            out_texts[i] = new
            length = int(lengths[i])
            out_confs[i] = ctc_confidences(log_softmax(logits[i : i + 1, :length]), [self.charset.encode(new).tolist()],
                                           np.array([length]))[0]
        return out_texts, out_confs

    def line_scorer(self, logits: np.ndarray, memo: dict[str, float] | None = None
                    ) -> Callable[[Sequence[str]], list[float]]:
        """The lexicon's rescoring scorer for one line's logits [T, C] (its own frames): whole
        texts -> the CTC log-likelihood of each under the model, plus the LM's log-probability
        times the LM weight with beam search and an LM (the score beam search maximises);
        -inf for a text with characters outside the charset.

        With `memo` (a dict kept by the caller for these logits), a text scored before is not
        scored again. The LM weight is read when the scorer is made, so a memo never mixes weights.
        """
        from vhrmodel.decoding import NEG_INF, ctc_log_likelihood, log_softmax

        lp = log_softmax(logits[None])
        lm = self.lm if self.decoder == "beam" else None
        weight = self.lm_weight
        memo = {} if memo is None else memo

        def score(lines: Sequence[str]) -> list[float]:
            new = list(dict.fromkeys(line for line in lines if line not in memo))
            ok = [all(ch in self.charset for ch in line) for line in new]
            ids = [self.charset.encode(line).tolist() if good else [] for line, good in zip(new, ok)]
            ll = ctc_log_likelihood(np.broadcast_to(lp, (len(new),) + lp.shape[1:]), ids) if new else []
            for line, good, value in zip(new, ok, ll):
                memo[line] = float(value) + (weight * lm.score(line) if lm is not None else 0.0) if good else NEG_INF
            return [memo[line] for line in lines]

        return score

    def char_infos(self, text: str, logits: np.ndarray, length: int, scale: float | None) -> list[CharInfo]:
        """Per-character confidence and position of `text` on one line's logits [T, C]."""
        return self.char_infos_batch([text], logits[None], np.array([length]), [scale])[0]

    def char_infos_batch(self, texts: Sequence[str], logits: np.ndarray, lengths: np.ndarray,
                         scales: Sequence[float | None]) -> list[list[CharInfo]]:
        """`char_infos` of every line of a logits batch [B, T, C], aligned in one pass.

        Args:
            texts: the decoded lines.
            logits, lengths: the batch and each line's own frame count.
            scales: per line, original width / model input width (None: no `x_original`).
        """
        out = []
        for text, spans, scale in zip(texts, self.char_spans(texts, logits, lengths), scales):
            infos = []
            for ch, (start, stop, conf) in zip(text, spans):
                x = (start * self.downsample, stop * self.downsample)
                x_orig = None if scale is None else (int(round(x[0] * scale)), int(round(x[1] * scale)))
                infos.append(CharInfo(ch, round(conf, 5), (start, stop), x, x_orig))
            out.append(infos)
        return out

    def warm_up(self) -> None:
        """Run the model on blank lines so graph tracing is not counted in the first lines' time."""
        from vhrdata.preprocess import PAD_VALUE

        h = self.settings.height
        for n, w in ((1, 256), (2, 384)):
            self.logits([np.full((h, w), PAD_VALUE, np.uint8)] * n)

    def recognize(
        self,
        images: Sequence[ImageInput],
        batch_size: int = 1,
        callback: Callable[[int, int], None] | None = None,
        on_error: str = "raise",
        chars: bool = True,
    ) -> list[Prediction]:
        """Recognise images (paths, encoded bytes or arrays), in input order.

        Lines are batched by similar size to limit padding; the batch does not change a line's
        result. Each `Prediction.ms` is its batch's wall time divided by the batch's size.

        Args:
            images: the line images.
            batch_size: lines per model call.
            callback: called as callback(done, total) with line counts after each batch.
            on_error: "raise" stops at the first image that cannot be read (`ImageDecodeError`);
                "report" returns a `Prediction` with `error` set for it and reads the rest.
            chars: also compute per-character confidences and positions.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive. Received: batch_size={batch_size}")
        if on_error not in ("raise", "report"):
            raise ValueError(f"on_error must be 'raise' or 'report'. Received: on_error={on_error!r}")
        sources = [str(im) if isinstance(im, (str, Path)) else f"<image {i}>" for i, im in enumerate(images)]
        results: list[Prediction | None] = [None] * len(images)
        order = list(range(len(images)))
        if batch_size > 1:
            # Width is only known after decoding; file size is a cheap proxy for line length.
            order.sort(key=lambda i: _size_hint(images[i]))
        crops = self.settings.crop_margins
        for start in range(0, len(order), batch_size):
            t0 = time.perf_counter()
            idx, prepared, original = [], [], []
            for i in order[start : start + batch_size]:
                try:
                    tensor, width = self.prepare(images[i])
                except VhrError as ex:
                    if on_error == "raise":
                        raise
                    results[i] = Prediction("", 0.0, 0.0, sources[i], error=str(ex))
                    continue
                idx.append(i)
                prepared.append(tensor)
                original.append(width)
            if idx:
                logits, lengths = self.logits(prepared)
                texts, confs = self.decode(logits, lengths)
                scales = [None if crops else w / max(1, t.shape[1]) for w, t in zip(original, prepared)]
                infos = self.char_infos_batch(texts, logits, lengths, scales) if chars else [[] for _ in idx]
                ms = (time.perf_counter() - t0) * 1000.0 / len(idx)
                for k, (i, text, conf) in enumerate(zip(idx, texts, confs)):
                    results[i] = Prediction(text=text, confidence=float(conf), ms=round(ms, 3), source=sources[i],
                                            chars=infos[k])
            if callback is not None:
                callback(min(start + batch_size, len(order)), len(order))
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
            beam_width: int | None = None) -> list[Prediction]:
    """Convenience: load `model_path` and recognise `images`."""
    return Recognizer(model_path, decoder=decoder, beam_width=beam_width).recognize(images, batch_size=batch_size)
