"""Errors of the model package. The CLI turns every `VhrError` into a one-line message."""

from vhrdata.errors import VhrError


class ModelFileError(VhrError):
    """A model file or export is missing, unreadable, damaged, or lacks its charset and preprocessing."""


class TrainingError(VhrError):
    """Training cannot start or resume (run folder, checkpoint or data problem)."""


class ExportError(VhrError):
    """A model cannot be exported to the requested format."""


class MissingDependencyError(VhrError):
    """An optional dependency the request needs is not installed (see `vhrmodel.extras`)."""
