"""Declarative pipelines: a YAML file names the stages to run for a dataset, in order.

Each stage maps to one command of the `vhrdata` or `vhrmodel` CLI, so every option a command has can be set
in a pipeline, under the command's own option names. Paths between stages follow a fixed layout under the
pipeline's work folder:

    WORK/synth     synthetic dataset (synth stage)        WORK/records  ingest + split output
    WORK/store     LMDB store (build-lmdb)                 WORK/report   statistics report (stats)
    WORK/run       training run (train)                    WORK/eval     evaluation (evaluate)

Example (pipelines/cinnamon.yaml):

    name: cinnamon
    src: ../shared/data/cinnamon-0916
    work: work/cinnamon
    stages:
      - ingest: {layout: cinnamon}
      - split: {group: image, ratios: "0.9,0.1,0"}
      - build-lmdb: {height: 64}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vhrdata.errors import PipelineError

PIPELINE_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class StageSpec:
    program: str  # vhrdata or vhrmodel
    command: str
    positional: tuple[str, ...]
    options: dict[str, str] = field(default_factory=dict)


# Positional arguments and default options per stage; {src} and {work} are filled in.
STAGES: dict[str, StageSpec] = {
    "synth": StageSpec("vhrdata", "synth", ("{work}/synth",), {"overwrite": "true"}),
    "ingest": StageSpec("vhrdata", "ingest", ("{src}",), {"out": "{work}/records"}),
    "split": StageSpec("vhrdata", "split", ("{work}/records",)),
    "check-leakage": StageSpec("vhrdata", "check-leakage", ("{work}/records",)),
    "build-lmdb": StageSpec("vhrdata", "build-lmdb", ("{work}/records",), {"out": "{work}/store"}),
    "verify": StageSpec("vhrdata", "verify", ("{work}/store",)),
    "stats": StageSpec("vhrdata", "stats", ("{work}/store",), {"out": "{work}/report"}),
    "train": StageSpec("vhrmodel", "train", (), {"store": "{work}/store", "out": "{work}/run"}),
    "evaluate": StageSpec(
        "vhrmodel", "evaluate", (), {"model": "{work}/run/model.keras", "store": "{work}/store", "out": "{work}/eval"}
    ),
}


@dataclass
class Step:
    """One stage, resolved to a command line."""

    stage: str
    program: str
    argv: list[str]

    def display(self) -> str:
        return " ".join([self.program, *self.argv])


@dataclass
class Pipeline:
    name: str
    src: str | None
    work: str
    steps: list[Step]


def _option_args(options: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for key, value in options.items():
        flag = "--" + str(key).replace("_", "-")
        if value is True or value == "true":
            args.append(flag)
        elif value is False or value == "false":
            args.append("--no-" + str(key).replace("_", "-"))
        elif value is None:
            continue
        elif isinstance(value, (list, tuple)):
            args += [flag, ",".join(str(v) for v in value)]
        else:
            args += [flag, str(value)]
    return args


def load_pipeline(path: str | Path, src: str | None = None, work: str | None = None) -> Pipeline:
    """Read and validate a pipeline file; `src` and `work` override the file's own values."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"pipeline file not found: {path}")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as ex:
        raise PipelineError(f"{path} is not valid YAML: {ex}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("stages"), list) or not spec["stages"]:
        raise PipelineError(f"{path} needs a non-empty `stages:` list")
    version = spec.get("schema_version", PIPELINE_SCHEMA_VERSION)
    if version != PIPELINE_SCHEMA_VERSION:
        raise PipelineError(f"{path} has pipeline schema_version {version}; this vhr reads {PIPELINE_SCHEMA_VERSION}")
    unknown = set(spec) - {"name", "src", "work", "stages", "schema_version", "description"}
    if unknown:
        raise PipelineError(f"{path}: unknown top-level keys {sorted(unknown)}")
    src = src or spec.get("src")
    work = work or spec.get("work") or f"work/{spec.get('name', path.stem)}"
    names = [next(iter(s)) if isinstance(s, dict) and len(s) == 1 else s for s in spec["stages"]]
    if "synth" in names and src is None:
        src = f"{work}/synth"
    steps = []
    for entry in spec["stages"]:
        if isinstance(entry, str):
            stage, options = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            stage, options = next(iter(entry.items()))
            options = options or {}
        else:
            raise PipelineError(f"{path}: a stage is `- name: {{options}}`, got {entry!r}")
        if stage not in STAGES:
            raise PipelineError(f"{path}: unknown stage {stage!r}; known stages: {', '.join(STAGES)}")
        if not isinstance(options, dict):
            raise PipelineError(f"{path}: options of stage {stage!r} must be a mapping, got {options!r}")
        if stage == "ingest" and src is None:
            raise PipelineError(f"{path}: no dataset given; set `src:` in the file or pass --src")
        st = STAGES[stage]
        fill = {"src": src or "", "work": work}
        merged = {k: v.format(**fill) for k, v in st.options.items()}
        merged.update(options)
        argv = [st.command, *(p.format(**fill) for p in st.positional), *_option_args(merged)]
        steps.append(Step(stage, st.program, argv))
    return Pipeline(spec.get("name", path.stem), src, work, steps)
