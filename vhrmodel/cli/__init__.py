"""The `vhrmodel` command line. Each command group lives in its own module and exports COMMANDS.

Command modules import Keras inside their functions, so `vhrmodel --help` stays fast.
"""

from __future__ import annotations

import importlib

import click

from vhrdata.cli.common import setup_logging
from vhrmodel import __version__

# One module per command group; each defines COMMANDS, a list of click commands.
COMMAND_MODULES = ["train", "evaluate", "predict", "export", "serve"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vhrmodel")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """Train, evaluate and run the handwritten Vietnamese line recogniser."""
    setup_logging(verbose)


for _name in COMMAND_MODULES:
    for _cmd in importlib.import_module(f"vhrmodel.cli.{_name}").COMMANDS:
        main.add_command(_cmd)
