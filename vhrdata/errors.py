"""Library exceptions. The CLI turns every `VhrError` into a one-line message.

`write_failure` words a failed write (full disk, I/O error, refused write) for every writer of vhr.
"""

from __future__ import annotations

import errno
from pathlib import Path


class VhrError(Exception):
    """Base class of every error vhr raises on purpose."""


class SourceNotFound(VhrError):
    """The dataset folder or file does not exist."""


class LayoutError(VhrError):
    """No dataset layout, or more than one, matches the source folder."""


class OutputNotWritable(VhrError):
    """The output folder cannot be created or written."""


class RecordsError(VhrError):
    """records.parquet is missing, foreign, or of another schema version."""


class SplitError(VhrError):
    """The split cannot be made with the given ratios or records."""


class UnknownCharacterError(VhrError, ValueError):
    """A label holds characters that the charset does not have."""


class StoreError(VhrError):
    """A store is missing, foreign, stale, half-built or corrupt."""


class PipelineError(VhrError):
    """A pipeline file is malformed or names an unknown stage."""


class StatsError(VhrError):
    """The stats report's input is neither a records folder nor a store."""


class ImageDecodeError(VhrError):
    """An image file or buffer cannot be read or decoded."""


class SynthError(VhrError):
    """The synthetic generator cannot run: no usable font, or an output folder it must not overwrite."""


def write_failure(ex: BaseException, out: str | Path, kept: str, what: str | None = None,
                  elsewhere: str = "or choose another --out", then: str = "then run again") -> str:
    """The one-line message for a write that failed: its cause, what it left as it was, what to do.

    Ingest and split (OutputNotWritable), the store build (StoreError) and model files
    (vhrmodel's ModelFileError) all word a full disk, an I/O error and a refused write with this;
    each caller wraps the message in its own exception type.

    Args:
        ex: the error: an OSError, or a library's error that carries only the system's words
            (pyarrow, LMDB), recognised by "No space left" and "Input/output error".
        out: the folder (or file) being written.
        kept: what the failure left as it was, e.g. "the previous output in OUT is unchanged".
        what: the file or step that failed, when narrower than `out`.
        elsewhere: the alternative to freeing space or fixing the folder ("" when there is none).
        then: what to do once there is space ("" when nothing is left to do).
    """
    code = getattr(ex, "errno", None)
    text = " ".join(str(ex).split())
    if code is None:
        code = errno.ENOSPC if "No space left" in text else errno.EIO if "Input/output error" in text else None
    alt = f" {elsewhere}" if elsewhere else ""
    after = f", {then}" if then else ""
    if code == errno.ENOSPC:
        cause, fix = "disk full (no space left on device)", f"free space{alt}{after}"
    elif code == getattr(errno, "EDQUOT", -1):
        cause, fix = "disk quota exceeded", f"free space{alt}{after}"
    elif code == errno.EIO:
        # LMDB reports a full disk as EIO too (its writes go through a memory map).
        cause, fix = ("I/O error (a full or failing disk, or a lost network share)",
                      f"check the disk's free space and health{alt}{after}")
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        cause, fix = f"cannot write ({getattr(ex, 'strerror', None) or text})", f"make it writable{alt}"
    else:
        detail = getattr(ex, "strerror", None) or f"{type(ex).__name__}: {text}"
        cause, fix = f"cannot write ({detail})", f"fix the folder{alt}{after}"
    where = f"{what} in {out}" if what else str(out)
    return f"{cause} while writing {where}; {kept}; {fix}"
