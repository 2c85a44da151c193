"""The `vhrdata` command line. Each command group lives in its own module and exports COMMANDS."""

from __future__ import annotations

import importlib

import click

from vhrdata import __version__
from vhrdata.cli.common import setup_logging

# One module per command group; each defines COMMANDS, a list of click commands.
COMMAND_MODULES = ["ingest", "stats", "pipeline", "store", "synth"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vhrdata")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """Ingest, clean, split and compile handwritten Vietnamese text-line datasets."""
    setup_logging(verbose)


for _name in COMMAND_MODULES:
    for _cmd in importlib.import_module(f"vhrdata.cli.{_name}").COMMANDS:
        main.add_command(_cmd)
