"""Library exceptions. The CLI turns every `VhrError` into a one-line message."""


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
