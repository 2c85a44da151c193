"""The `vhrmodel` command line. Each command group lives in its own module and exports COMMANDS.

Command modules import Keras inside their functions, so `vhrmodel --help` stays fast, and check
their arguments, paths and inputs before they do, so a mistake is reported in a second. The group
callback quiets TensorFlow's C++ log lines before any command can import it
(`vhrmodel.quiet`); `-v` or `VHR_TF_LOGS=1` shows them.
"""

from __future__ import annotations

import importlib

import click

from vhrdata.cli.common import setup_logging
from vhrmodel import __version__

# One module per command group; each defines COMMANDS, a list of click commands.
COMMAND_MODULES = ["train", "evaluate", "predict", "export", "serve", "tune"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vhrmodel")
@click.option("-v", "--verbose", count=True,
              help="More log output (-vv for debug); also shows TensorFlow's own log lines (as VHR_TF_LOGS=1 does).")
def main(verbose: int) -> None:
    """Train, evaluate and run the handwritten Vietnamese line recogniser.

    TensorFlow's C++ start-up log lines (oneDNN, CPU features) are hidden; pass -v or set
    VHR_TF_LOGS=1 to see them.
    """
    from vhrmodel.quiet import silence_tensorflow

    silence_tensorflow(verbose)
    setup_logging(verbose)


for _name in COMMAND_MODULES:
    for _cmd in importlib.import_module(f"vhrmodel.cli.{_name}").COMMANDS:
        main.add_command(_cmd)
