"""`vhrdata run`: run the stages of a pipeline file."""

from __future__ import annotations

import importlib
import time

import click

from vhrdata.cli.common import handle_errors
from vhrdata.pipeline import STAGES, estimate_training, load_pipeline


def _program(name: str) -> click.Group:
    try:
        return importlib.import_module(f"{name}.cli").main
    except ModuleNotFoundError as ex:
        raise click.ClickException(f"stage needs the `{name}` package, which is not installed ({ex})") from None


@click.command("run")
@click.argument("pipeline_file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--src", help="Dataset folder or file; overrides the pipeline's `src:`.")
@click.option("--work", help="Work folder for every stage's output; overrides the pipeline's `work:`.")
@click.option("--only", help="Comma-separated stages to run (default: all).")
@click.option("--from", "start", help="Start at this stage (earlier stages' outputs must exist).")
@click.option("--dry-run", is_flag=True, help="Print the commands without running them.")
@handle_errors
def run_cmd(pipeline_file, src, work, only, start, dry_run):
    """Run a declarative pipeline (pipelines/*.yaml) stage by stage.

    Stages: {stages}. Each runs the vhrdata or vhrmodel command of the same name (ingest-synth runs
    ingest on the synth stage's output) with the options given in the file. Relative paths in the file
    resolve against the file's folder; --src and --work are taken as typed. Before it starts, the run prints
    its plan and, when it trains, the preset and a rough estimate of the training time.

    Example:

        vhrdata run pipelines/cinnamon.yaml --src ../shared/data/cinnamon-0916 --work work/cinnamon
    """
    pipe = load_pipeline(pipeline_file, src, work)
    names = [s.stage for s in pipe.steps]
    wanted = set(only.split(",")) if only else set(names)
    for name in wanted | ({start} if start else set()):
        if name not in STAGES or name not in names:
            raise click.BadParameter(f"stage {name!r} is not in this pipeline ({', '.join(names)})")
    steps = [s for s in pipe.steps if s.stage in wanted]
    if start:
        steps = steps[[s.stage for s in steps].index(start):]
    click.echo(f"pipeline {pipe.name}: {len(steps)} stage(s), work folder {pipe.work}"
               + (f", data {pipe.src}" if pipe.src else ""))
    click.echo("plan: " + " → ".join(s.stage for s in steps))
    planned = estimate_training(pipe) if any(s.stage == "train" for s in steps) else None
    if planned is not None:
        click.echo(planned.describe())
    for i, step in enumerate(steps, 1):
        if step.stage == "train" and not dry_run and planned is not None and i > 1:
            now = estimate_training(pipe)  # the store exists by now: count its lines
            if now is not None and now.lines_from != planned.lines_from:
                click.echo(now.describe())
        click.secho(f"[{i}/{len(steps)}] {step.display()}", bold=True)
        if dry_run:
            continue
        t0 = time.time()
        try:
            _program(step.program).main(step.argv, prog_name=step.program, standalone_mode=False)
        except click.exceptions.Exit as ex:
            if ex.exit_code:
                raise click.ClickException(f"stage {step.stage} exited with {ex.exit_code}") from None
        except click.ClickException as ex:
            raise click.ClickException(f"stage {step.stage} failed: {ex.format_message()}") from None
        click.echo(f"[{i}/{len(steps)}] {step.stage} done in {time.time() - t0:.1f}s")


run_cmd.help = run_cmd.help.replace("{stages}", ", ".join(STAGES))  # the stage list has one home: STAGES

COMMANDS = [run_cmd]
