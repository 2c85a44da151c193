import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from vhrdata.cli import main
from vhrdata.errors import SplitError
from vhrdata.records import read_records, write_records
from vhrdata.split import check_leakage, parse_ratios, split_groups, split_records


def records(writer_sizes: dict, texts=None) -> pd.DataFrame:
    rows = []
    for w, n in writer_sizes.items():
        for i in range(n):
            rows.append({"id": f"{w}/{i}", "source": "t", "writer": w, "path": f"/x/{w}/{i}.png",
                         "text": texts(w, i) if texts else f"line {w} {i}", "raw_text": "", "width": 100,
                         "height": 32, "sha1": f"{w}-{i}", "origin": ""})
    return pd.DataFrame(rows)


def assert_writer_disjoint(df, splits):
    assert (pd.DataFrame({"w": df["writer"], "s": splits}).groupby("w")["s"].nunique() == 1).all()


@pytest.mark.parametrize("method", ["stable", "balanced"])
def test_split_is_writer_disjoint_and_deterministic(method):
    df = records({f"w{i}": 5 + i % 7 for i in range(60)})
    a = split_groups(df, (0.8, 0.1, 0.1), seed=3, method=method)
    assert_writer_disjoint(df, a.splits)
    assert a.writer_disjoint and a.group == "writer"
    by_writer_a = dict(zip(df["writer"], a.splits))
    assert set(a.splits) <= {"train", "val", "test"}
    shuffled = df.sample(frac=1, random_state=1).reset_index(drop=True)
    b = split_groups(shuffled, (0.8, 0.1, 0.1), seed=3, method=method)
    assert dict(zip(shuffled["writer"], b.splits)) == by_writer_a
    c = split_groups(df, (0.8, 0.1, 0.1), seed=4, method=method)
    assert dict(zip(df["writer"], c.splits)) != by_writer_a


def test_stable_split_does_not_move_existing_writers_when_writers_are_added():
    old = records({f"w{i}": 4 for i in range(40)})
    new = pd.concat([old, records({f"new{i}": 9 for i in range(25)})], ignore_index=True)
    a = split_groups(old, seed=7)
    b = split_groups(new, seed=7)
    before = dict(zip(old["writer"], a.splits))
    after = dict(zip(new["writer"], b.splits))
    assert all(after[w] == s for w, s in before.items())


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 30), min_size=12, max_size=40),
    extra=st.lists(st.integers(1, 30), min_size=1, max_size=10),
    seed=st.integers(0, 10_000),
)
def test_property_stable_and_disjoint(sizes, extra, seed):
    old = records({f"w{i}": n for i, n in enumerate(sizes)})
    new = pd.concat([old, records({f"x{i}": n for i, n in enumerate(extra)})], ignore_index=True)
    a, b = split_groups(old, seed=seed), split_groups(new, seed=seed)
    assert_writer_disjoint(new, b.splits)
    if not a.notes and not b.notes:  # no empty-split repair happened
        after = dict(zip(new["writer"], b.splits))
        assert all(after[w] == s for w, s in zip(old["writer"], a.splits))
    assert sum(b.lines.values()) == len(new)


def test_balanced_split_meets_ratios_by_lines():
    rng = np.random.default_rng(0)
    df = records({f"w{i}": int(n) for i, n in enumerate(rng.integers(1, 40, 200))})
    r = split_groups(df, (0.8, 0.1, 0.1), seed=0, method="balanced")
    biggest = df["writer"].value_counts().max() / len(df)
    for s, want in zip(("train", "val", "test"), (0.8, 0.1, 0.1)):
        assert abs(r.achieved[s] - want) <= biggest
    assert_writer_disjoint(df, r.splits)


def test_stable_split_never_leaves_a_requested_split_empty():
    df = records({f"w{i}": 10 for i in range(5)})
    for seed in range(20):
        r = split_groups(df, (0.6, 0.2, 0.2), seed=seed)
        assert all(r.lines[s] > 0 for s in ("train", "val", "test")), (seed, r.lines)


def test_records_without_writers_are_grouped_by_image():
    df = records({"w": 30})
    df["writer"] = None
    r = split_groups(df, (0.9, 0.1, 0.0))
    assert r.group == "image" and not r.writer_disjoint
    assert any("NOT writer-disjoint" in n for n in r.notes)
    assert r.lines["test"] == 0 and r.lines["val"] > 0


@pytest.mark.parametrize("bad", ["0.5,0.5", "0.8,0.1,0.2", "a,b,c", "0,0.5,0.5", "-0.1,0.6,0.5"])
def test_bad_ratios_are_refused(bad):
    with pytest.raises(SplitError, match="Received"):
        parse_ratios(bad)


def test_leakage_check_finds_writer_image_and_text_leaks():
    df = records({"a": 3, "b": 3}, texts=lambda w, i: "Hà Nội" if i == 0 else f"{w}{i}")
    df["split"] = ["train", "train", "val", "val", "val", "val"]
    df.loc[3, "sha1"] = df.loc[0, "sha1"]
    rep = check_leakage(df)
    assert not rep["ok"]
    assert rep["writer_leaks"]["count"] == 1 and rep["writer_leaks"]["examples"][0]["writer"] == "a"
    assert rep["image_leaks"]["count"] == 1
    assert rep["shared_texts"]["count"] == 1 and rep["shared_texts"]["examples"][0]["text"] == "Hà Nội"


def write_dir(tmp_path, df):
    write_records(df, tmp_path / "ds")
    return tmp_path / "ds"


def test_split_records_writes_column_and_report(tmp_path):
    d = write_dir(tmp_path, records({f"w{i}": 3 for i in range(30)}))
    split_records(d, (0.8, 0.1, 0.1), seed=1)
    df = read_records(d, require_split=True)
    assert set(df["split"]) == {"train", "val", "test"}
    info = json.loads((d / "split.json").read_text())
    assert info["writer_disjoint"] and info["leakage"]["ok"] and info["seed"] == 1
    assert sum(info["lines"].values()) == 90


def test_cli_split_and_check_leakage(tmp_path):
    d = write_dir(tmp_path, records({f"w{i}": 3 for i in range(30)}))
    runner = CliRunner()
    res = runner.invoke(main, ["split", str(d), "--ratios", "0.8,0.1,0.1", "--seed", "2"])
    assert res.exit_code == 0, res.output
    assert "grouped by writer" in res.output and "leakage: writers in two splits 0" in res.output
    res = runner.invoke(main, ["check-leakage", str(d)])
    assert res.exit_code == 0 and "no writer or image leaks" in res.output
    df = read_records(d)
    df.loc[0, "split"] = "test" if df.loc[0, "split"] != "test" else "train"
    write_records(df, d)
    res = runner.invoke(main, ["check-leakage", str(d)])
    assert res.exit_code == 1 and "leakage found" in res.output


def test_cli_split_without_writers_says_not_disjoint(tmp_path):
    df = records({"w": 20})
    df["writer"] = None
    d = write_dir(tmp_path, df)
    res = CliRunner().invoke(main, ["split", str(d), "--ratios", "0.9,0.1,0"])
    assert res.exit_code == 0 and "NOT writer-disjoint" in res.output


def test_check_leakage_needs_a_split(tmp_path):
    d = write_dir(tmp_path, records({"w": 2}))
    res = CliRunner().invoke(main, ["check-leakage", str(d)])
    assert res.exit_code == 1 and "vhrdata split" in res.output


def test_stable_split_with_few_writers_warns_and_names_balanced():
    df = records({f"w{i}": 10 for i in range(4)})
    r = split_groups(df, (0.8, 0.1, 0.1), seed=0)
    assert r.lines == {"train": 20, "val": 10, "test": 10}  # 50/25/25, far from 80/10/10
    assert len(r.warnings) == 1
    w = r.warnings[0]
    assert "asked 80/10/10 %" in w and "gives 50/25/25 %" in w and "4 writers" in w
    assert "--method balanced meets the asked ratios as closely as writer granularity allows" in w
    balanced = split_groups(df, (0.8, 0.1, 0.1), seed=0, method="balanced")
    shares = "/".join(f"{100 * balanced.achieved[s]:.0f}" for s in ("train", "val", "test"))
    assert f"(here {shares} %" in w  # the shares it names are the ones balanced gives
    assert balanced.warnings == []


def test_stable_split_with_many_writers_does_not_warn():
    r = split_groups(records({f"w{i}": 10 for i in range(400)}), (0.8, 0.1, 0.1), seed=0)
    assert all(abs(r.achieved[s] - want) <= 0.05 for s, want in zip(("train", "val", "test"), (0.8, 0.1, 0.1)))
    assert r.warnings == []


def test_cli_split_prints_the_balanced_warning_and_records_it(tmp_path):
    d = write_dir(tmp_path, records({f"w{i}": 10 for i in range(4)}))
    res = CliRunner().invoke(main, ["split", str(d), "--ratios", "0.8,0.1,0.1"])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("warning: "))
    assert "--method balanced" in line and "50/25/25" in line
    assert json.loads((d / "split.json").read_text())["warnings"] == [line[len("warning: "):]]
