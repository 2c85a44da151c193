"""Shared CLI plumbing: library errors become one-line messages, never tracebacks."""

from __future__ import annotations

import functools
import logging

import click

from vhrdata.errors import VhrError


def handle_errors(fn):
    """Turn VhrError (and OSError on user paths) into click.ClickException."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VhrError as ex:
            raise click.ClickException(str(ex)) from None
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as ex:
            raise click.ClickException(f"{ex.strerror or ex}: {ex.filename}") from None

    return wrapper


def setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
