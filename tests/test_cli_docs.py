"""Every command of both CLIs is documented with an example (sqlite-utils style)."""

import importlib

import click
import pytest


def all_commands():
    for program in ("vhrdata", "vhrmodel"):
        main = importlib.import_module(f"{program}.cli").main
        for name, cmd in main.commands.items():
            yield program, name, cmd


@pytest.mark.parametrize("program,name,cmd", list(all_commands()), ids=lambda x: x if isinstance(x, str) else "")
def test_command_has_help_with_example(program, name, cmd):
    assert cmd.help and len(cmd.help.strip()) > 20, f"{program} {name} has no help"
    assert "Example:" in cmd.help, f"{program} {name} --help has no Example: section"
    ctx = click.Context(cmd, info_name=name)
    assert "Example:" in cmd.get_help(ctx)


def test_both_programs_have_commands():
    programs = {p for p, _, _ in all_commands()}
    assert programs == {"vhrdata", "vhrmodel"}
