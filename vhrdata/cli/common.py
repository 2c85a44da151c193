"""Shared CLI plumbing of both packages: library errors become one-line messages, never tracebacks."""

from __future__ import annotations

import functools
import sys
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


class LazyProgress:
    """A progress callback(done, total) that opens a click progress bar on first use.

    Opening the bar lazily keeps fatal errors that happen before any work from printing a stray bar label.
    """

    def __init__(self, label: str):
        self.label = label
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=max(total, 1), label=self.label,
                                         file=sys.stderr)
            self.bar.__enter__()
        self.bar.length = max(total, 1)
        self.bar.update(done - self.bar.pos)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False
