"""Declarative pipelines: a YAML file names the stages to run for a dataset, in order.

Each stage maps to one command of the `vhrdata` or `vhrmodel` CLI, so every option a command has can be set
in a pipeline, under the command's own option names. Paths between stages follow a fixed layout under the
pipeline's work folder:

    WORK/synth     synthetic dataset (synth stage)        WORK/records  ingest + split output
    WORK/store     LMDB store (build-lmdb)                 WORK/report   statistics report (stats)
    WORK/run       training run (train)                    WORK/eval     evaluation (evaluate)
    WORK/synth-records  the synthetic lines ingested (ingest-synth)
    WORK/mixed     the split records with the synthetic lines added to train (merge)

A pipeline with its own data (`src:`) mixes synthetic lines into training with `synth`, `ingest-synth` and
`merge` after `split`: the merge keeps the real split (its val and test lines stay real) and sends every
synthetic line to train. `{records}`, and every stage after a merge that reads records (build-lmdb,
check-leakage), then means WORK/mixed.

Paths. Relative paths written in the file (`src:`, `work:`, and path options such as `lm:` or
`augment-config:`) resolve against the folder that holds the file, never the current directory, so a
pipeline runs the same from anywhere. `--src` and `--work` given on the command line are taken as typed.
Option values may name the stage folders: `{work}`, `{src}`, `{records}`, `{store}`, `{run}`, e.g.
`lm: "{run}/charlm.json"`.

Example (pipelines/kalapa.yaml; `../data/kalapa-sample` is relative to pipelines/):

    name: kalapa
    src: ../data/kalapa-sample
    work: ../work/kalapa
    stages:
      - ingest: {layout: kalapa}
      - split: {ratios: "0.8,0.1,0.1"}
      - build-lmdb: {height: 48}
      - train: {preset: small, epochs: 60}
      - evaluate: {split: test, decoder: beam, lm: "{run}/charlm.json"}
"""

from __future__ import annotations

import json
import os
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
    "split": StageSpec("vhrdata", "split", ("{records}",)),
    # Synthetic lines beside a real dataset: ingest the synth stage's output, then merge it into train only.
    "ingest-synth": StageSpec("vhrdata", "ingest", ("{work}/synth",), {"out": "{work}/synth-records"}),
    "merge": StageSpec("vhrdata", "merge", ("{work}/records",),
                       {"train-only": "{work}/synth-records", "out": "{work}/mixed"}),
    "check-leakage": StageSpec("vhrdata", "check-leakage", ("{records}",)),
    "build-lmdb": StageSpec("vhrdata", "build-lmdb", ("{records}",), {"out": "{work}/store"}),
    "verify": StageSpec("vhrdata", "verify", ("{work}/store",)),
    "stats": StageSpec("vhrdata", "stats", ("{work}/store",), {"out": "{work}/report"}),
    "train": StageSpec("vhrmodel", "train", (), {"store": "{work}/store", "out": "{work}/run"}),
    # Chooses the LM weight and the lexicon on val and stores them in the run's LM, so a later
    # `evaluate --lm {run}/charlm.json` (and predict, serve) decode as tuned.
    "tune-lm": StageSpec(
        "vhrmodel", "tune-lm", (), {"model": "{work}/run/model.keras", "store": "{work}/store",
                                    "lm": "{work}/run/charlm.json", "split": "val"}
    ),
    "evaluate": StageSpec(
        "vhrmodel", "evaluate", (), {"model": "{work}/run/model.keras", "store": "{work}/store", "out": "{work}/eval"}
    ),
}

# Stages that read what another stage writes: each must come after its producers in the file.
NEEDS_BEFORE: dict[str, tuple[str, ...]] = {"ingest-synth": ("synth",), "merge": ("synth", "ingest-synth")}


# Options whose values are paths: a relative value in the file resolves against the file's folder.
PATH_OPTIONS = {"lm", "augment-config", "init-from", "records", "font-dir", "model", "store", "out"}
# Options that may also take a bare name instead of a path (e.g. a packaged model); such names pass unchanged.
NAME_OR_PATH_OPTIONS = {"init-from", "augment-config"}  # `starter`; `camera`


@dataclass
class Step:
    """One stage, resolved to a command line."""

    stage: str
    program: str
    argv: list[str]
    options: dict[str, Any] = field(default_factory=dict)  # merged options, keys spelled as flags (dashes)

    def display(self) -> str:
        return " ".join([self.program, *self.argv])


@dataclass
class Pipeline:
    name: str
    src: str | None
    work: str
    steps: list[Step]
    path: str = ""  # the pipeline file

    def step(self, stage: str) -> Step | None:
        return next((s for s in self.steps if s.stage == stage), None)


def _resolve(value: str, base: Path) -> str:
    """`value` as a path: `~` expanded, and a relative path joined to `base` (normalised, kept relative)."""
    value = os.path.expanduser(str(value))
    if os.path.isabs(value):
        return value
    return os.path.normpath(os.path.join(str(base), value))


def _fill(value: Any, fill: dict[str, str], path: Path) -> Any:
    if not isinstance(value, str) or "{" not in value:
        return value
    try:
        return value.format(**fill)
    except (KeyError, IndexError, ValueError) as ex:
        raise PipelineError(
            f"{path}: cannot fill {value!r} ({ex}); the placeholders are {', '.join('{' + k + '}' for k in fill)}"
        ) from None


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
    here = path.parent
    if src is None and spec.get("src") is not None:
        src = _resolve(spec["src"], here)
    if work is None:
        work = _resolve(spec.get("work") or f"work/{spec.get('name', path.stem)}", here)
    names = [next(iter(s)) if isinstance(s, dict) and len(s) == 1 else s for s in spec["stages"]]
    if "synth" in names and src is None:
        src = f"{work}/synth"
    steps = []
    seen: set[str] = set()  # the stages listed above the current one
    records = f"{work}/records"  # the records later stages read: WORK/mixed once a merge stage has run
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
        for needed in NEEDS_BEFORE.get(stage, ()):
            if needed not in seen:
                article = "an" if needed[0] in "aeiou" else "a"
                raise PipelineError(f"{path}: stage {stage!r} needs {article} `{needed}` stage before it")
        if stage == "merge" and "split" in names and "split" not in seen:
            raise PipelineError(f"{path}: `split` must come before `merge` (the merge keeps the real lines' split)")
        fill = {"src": src or "", "work": work, "records": records, "store": f"{work}/store",
                "run": f"{work}/run"}
        merged = {k: v.format(**fill) for k, v in st.options.items()}
        for key, value in options.items():
            flag = str(key).replace("_", "-")
            filled = _fill(value, fill, path)
            if (flag in PATH_OPTIONS and isinstance(value, str) and filled == value
                    and not (flag in NAME_OR_PATH_OPTIONS and "/" not in value and "." not in value)):
                filled = _resolve(value, here)  # a literal relative path written in the file
            merged[flag] = filled
        argv = [st.command, *(p.format(**fill) for p in st.positional), *_option_args(merged)]
        steps.append(Step(stage, st.program, argv, merged))
        seen.add(stage)
        if stage == "merge":
            records = str(merged["out"])
    return Pipeline(spec.get("name", path.stem), src, work, steps, str(path))


# ---------------------------------------------------------------------------- the training-time estimate

# Rough seconds per line per epoch (one training pass over the train lines plus validation on the val lines,
# counted together), on 2 CPU cores at the preset's recommended height. tiny: `make demo` (12 epochs of
# ~540 lines in ~258 s at height 32); small: docs/RESULTS.md (57 epochs of 1,500 lines in 95.5 min at
# height 48). base is not measured on CPU: the figure is an extrapolation, and base is meant for a GPU,
# which is many times faster than any of these.
SECONDS_PER_LINE = {"tiny": 0.04, "small": 0.067, "base": 0.6}
DEFAULT_PRESET = "small"  # what `vhrmodel train` uses without --preset or --init-from
DEFAULT_EPOCHS = 30  # `vhrmodel train --epochs` default
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


@dataclass
class TrainEstimate:
    """How long the train stage may take; rough, see SECONDS_PER_LINE."""

    preset: str
    epochs: int
    train_lines: int | None
    val_lines: int | None
    lines_from: str  # where the line counts come from
    seconds: float | None  # None when the line count is unknown
    seconds_per_line: float
    capped_by_time_limit: bool = False
    init_from: str | None = None  # the model it fine-tunes (--init-from), if any

    def describe(self) -> str:
        tuned = f", fine-tuned from {self.init_from}" if self.init_from else ""
        head = f"train: preset {self.preset}{tuned}, {self.epochs} epoch(s)"
        if self.seconds is None:
            return f"{head}; line count unknown until the data is ingested ({self.lines_from})"
        cap = " (capped by --time-limit)" if self.capped_by_time_limit else ""
        return (
            f"{head}, ~{self.train_lines} train + ~{self.val_lines} val lines ({self.lines_from}); "
            f"estimated training time ~{format_duration(self.seconds)}{cap} "
            f"= {self.epochs} epochs × {self.train_lines + self.val_lines} lines × {self.seconds_per_line} s "
            f"(a rough estimate for 2 CPU cores; a GPU is much faster)"
        )


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _ratios(pipe: Pipeline) -> tuple[float, float, float]:
    step = pipe.step("split")
    value = (step.options.get("ratios") if step else None) or "0.8,0.1,0.1"
    try:
        parts = [float(x) for x in (value.split(",") if isinstance(value, str) else value)]
        return (parts[0], parts[1], parts[2])
    except (ValueError, IndexError, TypeError):
        return (0.8, 0.1, 0.1)


def _count_source_lines(src: str) -> int | None:
    """About how many lines a raw dataset holds: manifest rows, or image files under the folder."""
    p = Path(src)
    if p.is_file():
        try:
            with open(p, "rb") as f:
                n = sum(1 for line in f if line.strip())
        except OSError:
            return None
        return max(n - (1 if p.suffix.lower() in (".csv", ".tsv") else 0), 0)
    if p.is_dir():
        return sum(1 for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    return None


def estimate_lines(pipe: Pipeline) -> tuple[int | None, int | None, str]:
    """(train lines, val lines, where the counts come from), from the best source available now."""
    train = pipe.step("train")
    store = Path(str(train.options.get("store", f"{pipe.work}/store"))) if train else Path(pipe.work) / "store"
    index = store / "index.json"
    if index.is_file():
        try:
            splits = json.loads(index.read_text(encoding="utf-8")).get("splits", {})
            return (int(splits.get("train", {}).get("count", 0)), int(splits.get("val", {}).get("count", 0)),
                    f"store {store}")
        except (OSError, ValueError, AttributeError):
            pass
    r = _ratios(pipe)
    synth = pipe.step("synth")
    n_synth = int(synth.options.get("lines", 0) or 0) if synth is not None else 0
    if n_synth and pipe.step("ingest-synth") is None:  # the synthetic lines are the dataset
        return round(n_synth * r[0]), round(n_synth * r[1]), f"the synth stage's {n_synth} lines × split ratios"
    if pipe.src:
        n = _count_source_lines(pipe.src)
        if n:
            source = f"about {n} images in {pipe.src} × split ratios"
            if n_synth and pipe.step("merge") is not None:  # merged into train only
                return round(n * r[0]) + n_synth, round(n * r[1]), f"{source}, + {n_synth} synthetic train lines"
            return round(n * r[0]), round(n * r[1]), source
    return None, None, f"nothing to count yet in {pipe.src or pipe.work}"


def estimate_training(pipe: Pipeline) -> TrainEstimate | None:
    """The training-time estimate of the pipeline's train stage, or None when it has no train stage."""
    step = pipe.step("train")
    if step is None:
        return None
    o = step.options
    init_from = str(o["init-from"]) if o.get("init-from") else None
    # Without --preset, train builds the init model's architecture; the starter is `small`.
    default = DEFAULT_PRESET if init_from in (None, "starter") else f"of {init_from}"
    preset = str(o.get("preset") or default)
    epochs = int(o.get("epochs") or DEFAULT_EPOCHS)
    per_line = SECONDS_PER_LINE.get(preset, SECONDS_PER_LINE[DEFAULT_PRESET])
    train_lines, val_lines, source = estimate_lines(pipe)
    if train_lines is None:
        return TrainEstimate(preset, epochs, None, None, source, None, per_line, init_from=init_from)
    if o.get("steps-per-epoch"):
        train_lines = min(train_lines, int(o["steps-per-epoch"]) * int(o.get("batch-size") or 16))
    if o.get("val-limit"):
        val_lines = min(val_lines, int(o["val-limit"]))
    seconds = epochs * (train_lines + val_lines) * per_line
    capped = False
    if o.get("time-limit"):
        limit = float(o["time-limit"]) * 60 + (train_lines + val_lines) * per_line  # stops after that epoch
        capped = limit < seconds
        seconds = min(seconds, limit)
    return TrainEstimate(preset, epochs, train_lines, val_lines, source, seconds, per_line, capped, init_from)
