
import pytest
from click.testing import CliRunner

from conftest import REPO
from test_ingest import make_kalapa
from vhrdata.cli import main
from vhrdata.errors import PipelineError
from vhrdata.pipeline import STAGES, load_pipeline
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
    pipe = load_pipeline(p, src="S")
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
