"""Deprecated private name of `vhrdata.cli.common`; kept while callers move."""

from vhrdata.cli.common import *  # noqa: F401,F403
from vhrdata.cli.common import LazyProgress, handle_errors, setup_logging  # noqa: F401
