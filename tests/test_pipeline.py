
import pytest
from click.testing import CliRunner

import os
import re
from pathlib import Path

from conftest import REPO
from test_ingest import make_kalapa
from vhrdata.cli import main
from vhrdata.errors import PipelineError
from vhrdata.pipeline import SECONDS_PER_LINE, STAGES, estimate_training, load_pipeline
from vhrdata.records import read_records


@pytest.mark.parametrize("path", sorted((REPO / "pipelines").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_pipelines_load_and_name_real_commands(path):
    pipe = load_pipeline(path, src="/data", work="/w")
    assert pipe.steps and pipe.work == "/w"
    for step in pipe.steps:
        program = __import__(f"{step.program}.cli", fromlist=["main"]).main
        assert step.argv[0] in program.commands, f"{step.display()}: no such command"


def test_shipped_pipelines_cover_the_four_layouts_and_synthetic():
    names = {p.stem for p in (REPO / "pipelines").glob("*.yaml")}
    assert {"synthetic", "cinnamon", "kalapa", "iam"} <= names


def write(tmp_path, text):
    p = tmp_path / "p.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_options_map_to_command_line(tmp_path):
    p = write(tmp_path, "name: t\nwork: W\nstages:\n  - ingest: {layout: kalapa, keep_whitespace: true}\n"
                        "  - split: {ratios: [0.8, 0.1, 0.1], seed: 3}\n")
    pipe = load_pipeline(p, src="S", work="W")
    assert pipe.steps[0].argv == ["ingest", "S", "--out", "W/records", "--layout", "kalapa", "--keep-whitespace"]
    assert pipe.steps[1].argv == ["split", "W/records", "--ratios", "0.8,0.1,0.1", "--seed", "3"]


@pytest.mark.parametrize(
    "text,message",
    [
        ("stages: []\n", "non-empty"),
        ("stages:\n  - frobnicate\n", "unknown stage 'frobnicate'"),
        ("stages:\n  - ingest\n", "no dataset given"),
        ("stages:\n  - split: 3\n", "must be a mapping"),
        ("bogus: 1\nstages:\n  - split\n", "unknown top-level keys"),
        ("stages: [\n", "not valid YAML"),
    ],
)
def test_bad_pipeline_files(tmp_path, text, message):
    with pytest.raises(PipelineError, match=message):
        load_pipeline(write(tmp_path, text))


def test_run_ingest_and_split_stages(tmp_path):
    src = make_kalapa(tmp_path / "src", writers=tuple(f"w{i}" for i in range(6)), per_writer=2)
    p = write(tmp_path, "name: t\nstages:\n  - ingest\n  - split: {ratios: '0.5,0.25,0.25'}\n  - check-leakage\n")
    res = CliRunner().invoke(main, ["run", str(p), "--src", str(src), "--work", str(tmp_path / "w")])
    assert res.exit_code == 0, res.output
    assert "in 12 · kept 12 · quarantined 0" in res.output
    df = read_records(tmp_path / "w" / "records", require_split=True)
    assert len(df) == 12 and set(df["split"]) <= {"train", "val", "test"}


def test_run_reports_the_failing_stage(tmp_path):
    p = write(tmp_path, "name: t\nstages:\n  - ingest\n")
    res = CliRunner().invoke(main, ["run", str(p), "--src", str(tmp_path / "missing"), "--work", str(tmp_path)])
    assert res.exit_code == 1 and "stage ingest failed: source not found" in res.output


def test_every_stage_maps_to_a_program():
    assert {s.program for s in STAGES.values()} == {"vhrdata", "vhrmodel"}


SHIPPED = sorted((REPO / "pipelines").glob("*.yaml"))


def option(step, flag):
    return step.argv[step.argv.index(flag) + 1]


def test_relative_paths_in_the_file_resolve_against_its_folder_from_any_cwd(tmp_path, monkeypatch):
    sub = tmp_path / "project" / "pipes"
    sub.mkdir(parents=True)
    (sub / "aug.yaml").write_text("p_elastic: 0.5\n")
    p = sub / "p.yaml"
    p.write_text("name: t\nsrc: ../data\nwork: ../work\nstages:\n  - ingest\n  - build-lmdb: {height: 48}\n"
                 "  - train: {preset: small, augment-config: aug.yaml, epochs: 2}\n"
                 "  - evaluate: {decoder: beam, lm: '{run}/charlm.json'}\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    pipe = load_pipeline(p)
    root = tmp_path / "project"
    assert Path(pipe.src) == root / "data" and Path(pipe.work) == root / "work"
    ingest, build, train, evaluate = pipe.steps
    assert ingest.argv[1] == str(root / "data") and option(ingest, "--out") == str(root / "work" / "records")
    assert option(train, "--augment-config") == str(sub / "aug.yaml")
    assert option(evaluate, "--lm") == str(root / "work" / "run" / "charlm.json")
    # the same through the CLI, from a relative pipeline path: nothing lands under the current directory
    res = CliRunner().invoke(main, ["run", os.path.relpath(p), "--dry-run"])
    assert res.exit_code == 0, res.output
    for line in [x for x in res.output.splitlines() if x.startswith("[")]:
        for arg in line.split()[3:]:
            if "/" in arg:
                assert (elsewhere / arg).resolve().is_relative_to(root), line
    assert not any(elsewhere.iterdir())


def test_src_and_work_on_the_command_line_are_taken_as_typed(tmp_path, monkeypatch):
    sub = tmp_path / "pipes"
    sub.mkdir()
    p = write(sub, "name: t\nsrc: ../data\nwork: ../work\nstages:\n  - ingest\n  - evaluate: {lm: '{run}/lm.json'}\n")
    monkeypatch.chdir(tmp_path)
    pipe = load_pipeline(p, src="mine", work="out")
    assert pipe.steps[0].argv[:4] == ["ingest", "mine", "--out", "out/records"]
    assert option(pipe.steps[1], "--lm") == "out/run/lm.json"


def test_shipped_pipelines_find_their_data_from_another_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("kalapa", "iam"):
        pipe = load_pipeline(REPO / "pipelines" / f"{name}.yaml")
        assert Path(pipe.src) == REPO / "data" / f"{name}-sample" and Path(pipe.src).is_dir()
        assert Path(pipe.work) == REPO / "work" / name
    assert Path(load_pipeline(REPO / "pipelines" / "synthetic.yaml").work) == REPO / "work" / "synthetic"


def test_unknown_placeholder_is_a_pipeline_error(tmp_path):
    p = write(tmp_path, "stages:\n  - evaluate: {lm: '{nope}/lm.json'}\n")
    with pytest.raises(PipelineError, match=r"cannot fill .*placeholders are \{src\}"):
        load_pipeline(p)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_pipelines_build_at_the_height_their_preset_recommends(path):
    from vhrmodel.presets import RECOMMENDED_HEIGHT

    pipe = load_pipeline(path, src="/data", work="/w")
    train, build = pipe.step("train"), pipe.step("build-lmdb")
    if train is None:
        pytest.skip("no train stage")
    if train.options.get("init-from") == "starter":
        # Fine-tuning the starter: the store is built at the starter's height, or init-from warns.
        from vhrmodel.starter import STARTER_FILE, STARTER_HEIGHT

        if STARTER_FILE.is_file():
            from vhrmodel.artifact import read_model_info

            assert read_model_info(STARTER_FILE)["preprocessing"]["height"] == STARTER_HEIGHT
        assert int(build.options["height"]) == STARTER_HEIGHT
        return
    assert "preset" in train.options, "a pipeline that trains names its preset (or fine-tunes the starter)"
    assert int(build.options["height"]) == RECOMMENDED_HEIGHT[train.options["preset"]]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_beam_evaluations_pass_the_runs_char_lm(path):
    pipe = load_pipeline(path, src="/data", work="/w")
    for step in pipe.steps:
        if step.stage == "evaluate" and step.options.get("decoder") == "beam":
            assert option(step, "--lm") == "/w/run/charlm.json"
            assert option(step, "--split") == "test"


def test_cinnamon_pipeline_splits_80_10_10_by_image():
    split = load_pipeline(REPO / "pipelines" / "cinnamon.yaml", src="/d", work="/w").step("split")
    assert split.options["ratios"] == "0.8,0.1,0.1" and split.options["group"] == "image"


def test_training_estimate_is_lines_times_epochs_times_the_preset_constant(tmp_path):
    p = write(tmp_path, "name: t\nstages:\n  - synth: {lines: 600}\n  - ingest\n  - split: {ratios: '0.5,0.25,0.25'}\n"
                        "  - train: {preset: tiny, epochs: 10}\n")
    est = estimate_training(load_pipeline(p, work=str(tmp_path / "w")))
    assert (est.preset, est.epochs, est.train_lines, est.val_lines) == ("tiny", 10, 300, 150)
    assert est.seconds == pytest.approx(10 * 450 * SECONDS_PER_LINE["tiny"])
    capped = write(tmp_path, "name: t\nstages:\n  - synth: {lines: 6000}\n  - train: {epochs: 100, time-limit: 1}\n")
    est = estimate_training(load_pipeline(capped, work=str(tmp_path / "w")))
    assert est.preset == "small" and est.capped_by_time_limit and est.seconds < 100 * 5400 * SECONDS_PER_LINE["small"]


def test_training_estimate_counts_an_existing_store(tmp_path):
    (tmp_path / "w" / "store").mkdir(parents=True)
    (tmp_path / "w" / "store" / "index.json").write_text('{"splits": {"train": {"count": 70}, "val": {"count": 7}}}')
    p = write(tmp_path, "name: t\nstages:\n  - train: {preset: small, epochs: 3}\n")
    est = estimate_training(load_pipeline(p, work=str(tmp_path / "w")))
    assert (est.train_lines, est.val_lines) == (70, 7) and "store" in est.lines_from
    assert est.seconds == pytest.approx(3 * 77 * SECONDS_PER_LINE["small"])


def test_a_pipeline_that_trains_prints_plan_preset_and_estimate_before_the_first_stage(tmp_path):
    res = CliRunner().invoke(main, ["run", str(REPO / "pipelines" / "synthetic.yaml"), "--work",
                                    str(tmp_path / "w"), "--dry-run"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    first_stage = next(i for i, x in enumerate(lines) if x.startswith("[1/"))
    head = "\n".join(lines[:first_stage])
    assert "plan: synth → ingest → split → build-lmdb → verify → stats → train → evaluate" in head
    assert re.search(r"train: preset small, fine-tuned from starter, 2 epoch\(s\), ~480 train \+ ~60 val lines", head)
    assert re.search(r"estimated training time ~\d+ s = 2 epochs × 540 lines × 0.067 s", head)
    assert not (tmp_path / "w").exists()  # a dry run writes nothing


def test_the_plan_names_the_model_a_train_stage_fine_tunes(tmp_path):
    from vhrdata.pipeline import estimate_training

    p = write(tmp_path, "name: t\nstages:\n  - train: {init-from: starter, epochs: 3}\n")
    est = estimate_training(load_pipeline(p, work=str(tmp_path)))
    assert est.preset == "small" and est.init_from == "starter"
    assert est.describe().startswith("train: preset small, fine-tuned from starter, 3 epoch(s)")
    p = write(tmp_path, "name: t\nstages:\n  - train: {init-from: runs/a/model.keras}\n")
    est = estimate_training(load_pipeline(p, work=str(tmp_path)))
    assert est.init_from.endswith("runs/a/model.keras") and est.preset == f"of {est.init_from}"


def test_a_pipeline_without_train_prints_no_estimate(tmp_path):
    p = write(tmp_path, "name: t\nstages:\n  - split\n")
    res = CliRunner().invoke(main, ["run", str(p), "--work", str(tmp_path), "--dry-run"])
    assert res.exit_code == 0 and "plan: split" in res.output and "estimated" not in res.output


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_pipelines_pass_only_options_their_commands_take(path):
    pipe = load_pipeline(path, src="/data", work="/w")
    for step in pipe.steps:
        command = __import__(f"{step.program}.cli", fromlist=["main"]).main.commands[step.argv[0]]
        known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        flags = [a for a in step.argv[1:] if a.startswith("--")]
        assert set(flags) <= known, f"{step.display()}: {sorted(set(flags) - known)} are not options of {step.argv[0]}"


def test_cinnamon_pipeline_tunes_on_val_before_it_reads_test():
    pipe = load_pipeline(REPO / "pipelines" / "cinnamon.yaml", src="/d", work="/w")
    stages = [s.stage for s in pipe.steps]
    assert stages.index("tune-lm") < stages.index("evaluate")
    tune = pipe.step("tune-lm")
    assert option(tune, "--split") == "val" and option(tune, "--lm") == "/w/run/charlm.json"
    assert option(tune, "--model") == "/w/run/model.keras" and option(tune, "--store") == "/w/store"
    train = pipe.step("train")
    assert option(train, "--augment-config") == "camera" and option(train, "--init-from") == "starter"
    assert "--flatten-background" in pipe.step("build-lmdb").argv
    assert pipe.step("build-lmdb").argv[1] == "/w/mixed"  # run G's data: real split + synthetic train lines
    assert option(pipe.step("synth"), "--lines") == "1200" and option(pipe.step("synth"), "--seed") == "21"


def test_a_merge_stage_makes_later_stages_read_the_mixed_records(tmp_path):
    p = write(tmp_path, "name: t\nstages:\n  - ingest\n  - split\n  - synth: {lines: 8}\n  - ingest-synth\n"
                        "  - merge\n  - check-leakage\n  - build-lmdb\n")
    pipe = load_pipeline(p, src="S", work="W")
    assert pipe.step("split").argv[1] == "W/records"
    assert pipe.step("synth").argv[:2] == ["synth", "W/synth"]
    assert pipe.step("ingest-synth").argv == ["ingest", "W/synth", "--out", "W/synth-records"]
    assert pipe.step("merge").argv == ["merge", "W/records", "--train-only", "W/synth-records", "--out", "W/mixed"]
    assert pipe.step("check-leakage").argv[1] == "W/mixed" and pipe.step("build-lmdb").argv[1] == "W/mixed"
    assert pipe.src == "S"  # a synth stage beside src: the dataset is still src


@pytest.mark.parametrize(
    "stages,message",
    [
        ("  - ingest\n  - split\n  - merge\n", "needs a `synth` stage"),
        ("  - ingest\n  - synth\n  - ingest-synth\n  - merge\n  - split\n", "`split` must come before `merge`"),
        # listed, but after the stage that reads their output
        ("  - ingest\n  - split\n  - ingest-synth\n  - synth\n  - merge\n", "'ingest-synth' needs a `synth` stage"),
        ("  - ingest\n  - split\n  - merge\n  - synth\n  - ingest-synth\n", "'merge' needs a `synth` stage"),
        ("  - ingest\n  - split\n  - synth\n  - merge\n", "'merge' needs an `ingest-synth` stage"),
    ],
)
def test_a_merge_stage_out_of_place_is_a_pipeline_error(tmp_path, stages, message):
    with pytest.raises(PipelineError, match=message):
        load_pipeline(write(tmp_path, "name: t\nstages:\n" + stages), src="S", work="W")


def test_the_training_estimate_counts_merged_synthetic_lines_in_train_only(tmp_path):
    src = make_kalapa(tmp_path / "src", writers=("w1", "w2"), per_writer=5)
    p = write(tmp_path, "name: t\nstages:\n  - ingest\n  - split: {ratios: '0.6,0.2,0.2'}\n  - synth: {lines: 40}\n"
                        "  - ingest-synth\n  - merge\n  - train: {epochs: 2}\n")
    est = estimate_training(load_pipeline(p, src=str(src), work=str(tmp_path / "w")))
    assert (est.train_lines, est.val_lines) == (6 + 40, 2) and "40 synthetic train lines" in est.lines_from


def test_run_mixes_synthetic_lines_into_train_and_keeps_the_real_split(tmp_path):
    src = make_kalapa(tmp_path / "src", writers=tuple(f"w{i}" for i in range(6)), per_writer=2)
    p = write(tmp_path, "name: t\nstages:\n  - ingest\n  - split: {ratios: '0.5,0.25,0.25', seed: 1}\n"
                        "  - synth: {lines: 6, writers: 2, seed: 3}\n  - ingest-synth\n  - merge\n")
    work = tmp_path / "w"
    res = CliRunner().invoke(main, ["run", str(p), "--src", str(src), "--work", str(work)])
    assert res.exit_code == 0, res.output
    real = read_records(work / "records", require_split=True)
    mixed = read_records(work / "mixed", require_split=True)
    assert len(mixed) == len(real) + 6
    for split in ("val", "test"):  # the real lines' val and test, untouched
        assert (mixed["split"] == split).sum() == (real["split"] == split).sum() > 0
    assert (mixed["split"] == "train").sum() == (real["split"] == "train").sum() + 6
